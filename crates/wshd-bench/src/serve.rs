//! The accept loop every reference server shares.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

use crate::BoxError;

/// Binds `addr` on a new multi-thread runtime (like wshd's) and runs `connection` as a task
/// for every accepted socket, until killed. An accept error (e.g. EMFILE) is reported under
/// `name` and retried after a short pause, so the open connections keep being served.
pub(crate) fn serve_forever<F, Fut>(name: &str, addr: SocketAddr, connection: F) -> Result<(), BoxError>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(addr).await?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream));
                }
                Err(e) => {
                    eprintln!("{name}: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
}
