//! Handlers built into the host (`[[route]] builtin = "…"`): served without any plugin, on
//! the session's own types ([`ConnShared`] and the driver's task context), so no vtable call,
//! no `catch_unwind` shim, no lent buffer and no `FfiFuture` lies between them and the socket.
//! The benchmark's `wshd-builtin` measures wshd through this path to show what the plugin
//! boundary costs.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;

use super::session::{ConnShared, HandlerExit, HandlerFuture, Inbound, OpError};
use super::transport::DataKind;
use crate::config::Builtin;

/// The text after whose echo the echo handler returns (the server then closes with 1000), as
/// mod_pywebsocket's `echo_wsh.py` and the `echo_wsh` plugin do.
const GOODBYE: &[u8] = b"Goodbye";

/// The `transfer_data` future of `builtin` on the connection `shared`.
pub(crate) fn transfer_data(builtin: Builtin, shared: Arc<ConnShared>) -> HandlerFuture {
    let future: Pin<Box<dyn Future<Output = HandlerExit> + Send>> = match builtin {
        Builtin::Echo => Box::pin(echo(shared)),
    };
    HandlerFuture::Native(future)
}

/// Echoes every text and binary message with its kind, ignores pongs, and returns when the
/// connection is closed or after echoing the text `Goodbye`. Like a plugin handler that
/// returns, the driver then completes the closing handshake (1000, or the peer's code
/// echoed).
async fn echo(shared: Arc<ConnShared>) -> HandlerExit {
    loop {
        let (kind, data) = match poll_fn(|cx| shared.poll_recv(cx)).await {
            Inbound::Text(data) => (DataKind::Text, data),
            Inbound::Binary(data) => (DataKind::Binary, data),
            Inbound::Pong(_) => continue,
            Inbound::Closed(..) => return HandlerExit::Returned,
        };
        if send(&shared, kind, &data).await.is_err() {
            return HandlerExit::Returned;
        }
        if kind == DataKind::Text && data[..] == *GOODBYE {
            return HandlerExit::Returned;
        }
    }
}

/// Sends one whole message and waits until it is written, as the SDK's `send_text` and
/// `send_binary` do.
async fn send(shared: &ConnShared, kind: DataKind, data: &[u8]) -> Result<(), OpError> {
    if !poll_fn(|cx| shared.poll_send(cx, kind, true, data)).await? {
        poll_fn(|cx| shared.poll_flush(cx)).await?;
    }
    Ok(())
}
