//! The safe face of a plugin for the rest of the host: `http/` asks a [`HandlerInstance`]
//! for a [`HandshakeVerdict`] and `ws/` drives the [`HandlerFuture`] it starts; neither sees
//! an ABI type or code.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_ffi::FfiFuture;
use wshd_sdk::abi::{
    HANDSHAKE_ABORT, HANDSHAKE_ACCEPT, HANDSHAKE_PANICKED, HANDSHAKE_REJECT, RStr, TRANSFER_DONE,
};

use super::host::connection::conn_for;
use super::host::handshake::HandshakeAnswer;
use super::loader::HandlerInstance;
use super::request::RequestView;
use crate::watchdog::Watched;
use crate::ws::session::{ConnShared, HandlerExit, HandlerFuture, KeepAlive};

/// What a plugin's `do_handshake` decided.
#[derive(Debug)]
pub(crate) enum HandshakeVerdict {
    /// Accepted.
    Accept(Accepted),
    /// Refused with an HTTP error response.
    Reject(Rejected),
    /// Drop the connection without a response.
    Abort,
    /// `do_handshake` panicked, with this message.
    Panicked(String),
    /// The plugin returned a verdict code this host does not know (a plugin bug).
    Unknown(u32),
}

/// An accepted handshake: what goes on the 101.
#[derive(Debug, Default)]
pub(crate) struct Accepted {
    /// The subprotocol the handler chose.
    pub(crate) protocol: Option<String>,
    /// Extra response headers.
    pub(crate) headers: Vec<(String, String)>,
    /// The handler declined every extension the client offered.
    pub(crate) decline_extensions: bool,
}

/// A refused handshake: the handler's response.
#[derive(Debug)]
pub(crate) struct Rejected {
    /// The HTTP status the handler asked for (not yet checked to be an error status).
    pub(crate) status: u16,
    /// Its headers.
    pub(crate) headers: Vec<(String, String)>,
    /// Its body.
    pub(crate) body: String,
}

impl HandshakeVerdict {
    fn from_abi(code: u32, answer: HandshakeAnswer) -> HandshakeVerdict {
        let HandshakeAnswer { protocol, headers, status, body, message, decline_extensions } = answer;
        match code {
            HANDSHAKE_ACCEPT => HandshakeVerdict::Accept(Accepted { protocol, headers, decline_extensions }),
            HANDSHAKE_REJECT => HandshakeVerdict::Reject(Rejected { status, headers, body }),
            HANDSHAKE_ABORT => HandshakeVerdict::Abort,
            HANDSHAKE_PANICKED => {
                HandshakeVerdict::Panicked(message.unwrap_or_else(|| "unknown panic".into()))
            }
            other => HandshakeVerdict::Unknown(other),
        }
    }
}

impl HandlerInstance {
    /// Runs the handler's `do_handshake` on `request`.
    pub(crate) fn handshake(&self, request: &RequestView) -> HandshakeVerdict {
        let mut answer = HandshakeAnswer::default();
        let _inside = crate::watchdog::enter(self.route);
        let code = self.raw_do_handshake(&request.raw(), &mut answer.as_out());
        HandshakeVerdict::from_abi(code, answer)
    }

    /// Starts the handler's `transfer_data` on the connection `shared`. The future keeps
    /// this instance (and so its library) alive until it is dropped.
    pub(crate) fn start(
        self: &Arc<Self>,
        request: &RequestView,
        protocol: Option<&str>,
        shared: &Arc<ConnShared>,
    ) -> HandlerFuture {
        let future = {
            let _inside = crate::watchdog::enter(self.route);
            self.raw_transfer_data(&request.raw(), RStr::from_opt(protocol), conn_for(shared))
        };
        let future = Watched::new(self.route, future);
        HandlerFuture::Plugin(Box::pin(PluginFuture { future, _instance: Arc::clone(self) }))
    }

    /// What keeps this handler's code loaded: held by the session while it may still call
    /// into the plugin (wakers the plugin registered, buffers it was lent).
    pub(crate) fn keep_alive(&self) -> KeepAlive {
        Arc::clone(&self.plugin) as KeepAlive
    }
}

/// A plugin's `transfer_data` future, with its exit code turned into a [`HandlerExit`].
struct PluginFuture {
    /// Polled and dropped under the watchdog's mark (both run plugin code).
    future: Watched<FfiFuture<u32>>,
    /// Declared last: the instance outlives the future (the ABI's contract).
    _instance: Arc<HandlerInstance>,
}

impl Future for PluginFuture {
    type Output = HandlerExit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HandlerExit> {
        Pin::new(&mut self.future).poll(cx).map(|code| match code {
            TRANSFER_DONE => HandlerExit::Returned,
            _ => HandlerExit::Panicked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> HandshakeAnswer {
        HandshakeAnswer {
            protocol: Some("chat".into()),
            headers: vec![("x-a".into(), "b".into())],
            status: 401,
            body: "who are you".into(),
            message: Some("boom".into()),
            decline_extensions: true,
        }
    }

    #[test]
    fn each_abi_verdict_becomes_its_host_verdict() {
        match HandshakeVerdict::from_abi(HANDSHAKE_ACCEPT, answer()) {
            HandshakeVerdict::Accept(a) => {
                assert_eq!(a.protocol.as_deref(), Some("chat"));
                assert_eq!(a.headers, [("x-a".to_owned(), "b".to_owned())]);
                assert!(a.decline_extensions);
            }
            other => panic!("expected Accept, got {other:?}"),
        }
        match HandshakeVerdict::from_abi(HANDSHAKE_REJECT, answer()) {
            HandshakeVerdict::Reject(r) => assert_eq!((r.status, r.body.as_str()), (401, "who are you")),
            other => panic!("expected Reject, got {other:?}"),
        }
        assert!(matches!(HandshakeVerdict::from_abi(HANDSHAKE_ABORT, answer()), HandshakeVerdict::Abort));
        assert!(matches!(
            HandshakeVerdict::from_abi(HANDSHAKE_PANICKED, answer()),
            HandshakeVerdict::Panicked(m) if m == "boom"
        ));
        assert!(matches!(HandshakeVerdict::from_abi(77, answer()), HandshakeVerdict::Unknown(77)));
    }

    #[test]
    fn a_panic_without_a_message_still_says_so() {
        let verdict = HandshakeVerdict::from_abi(HANDSHAKE_PANICKED, HandshakeAnswer::default());
        assert!(matches!(verdict, HandshakeVerdict::Panicked(m) if m == "unknown panic"));
    }
}
