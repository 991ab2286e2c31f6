//! `tcp-echo`: a plain TCP echo server (the floor): every byte read is written back.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::BoxError;

/// Options of `tcp-echo`.
#[derive(Debug, clap::Args)]
pub(crate) struct TcpEchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9996")]
    pub(crate) addr: SocketAddr,
}

/// Serves until killed, on a multi-thread runtime (like the other servers measured).
pub(crate) fn run(args: &TcpEchoArgs) -> Result<(), BoxError> {
    crate::serve::serve_forever("tcp-echo", args.addr, echo)
}

async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
