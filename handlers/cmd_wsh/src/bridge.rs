//! The connection's side, on a host thread: text messages become stdin lines (one write in
//! flight at a time, through `io::run`), stdout lines become text messages, the child's exit
//! closes the connection (1000 for status 0, 1011 otherwise), binary messages close it with
//! 1003. Whatever way this ends (return, panic, the task dropped), the lifeline's write end
//! closes and the runtime side kills and reaps the child.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Weak};
use std::task::Poll;

use wshd_sdk::{CloseCode, Connection, Message, io};

use crate::outbox::{Batch, End, Outbox};
use crate::process::Started;
use crate::session::{self, Parts, Port};

/// A stdin write in flight.
type Write = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What happened next.
enum Step {
    /// Output (and maybe the end) of the child.
    Out(Batch),
    /// A message from the client, or `None` when the connection closed.
    In(Option<Message>),
    /// The stdin write finished.
    Written,
}

/// Serves `conn` with the child `started`, until either ends.
pub(crate) async fn serve(mut conn: Connection, started: Started, max_line: usize) {
    let id = conn.id().map(|id| id.to_string()).unwrap_or_else(|_| "-".to_owned());
    let (lifeline, lifeline_end) = match std::io::pipe() {
        Ok(pipe) => pipe,
        Err(e) => return fail(&mut conn, &format!("cannot make a pipe: {e}")).await,
    };
    let outbox = Arc::new(Outbox::default());
    let parts = Parts { started, lifeline, outbox: Arc::clone(&outbox), conn: id, max_line };
    let port = match io::run(async move { session::open(parts) }).await {
        Ok(Ok(port)) => port,
        Ok(Err(e)) => return fail(&mut conn, &format!("cannot watch the child: {e}")).await,
        Err(e) => return fail(&mut conn, &format!("cannot watch the child: {e}")).await,
    };
    relay(&mut conn, &outbox, &port).await;
    drop(lifeline_end);
}

/// Logs `why` and closes with 1011.
async fn fail(conn: &mut Connection, why: &str) {
    wshd_sdk::error!("{why}");
    let _ = conn.close(CloseCode::INTERNAL_ERROR, "cannot run the program").await;
}

/// Moves messages and lines both ways until the child ends or the connection closes.
async fn relay(conn: &mut Connection, outbox: &Outbox, port: &Weak<Port>) {
    let sender = conn.sender();
    let mut write: Option<Write> = None;
    loop {
        match next_step(conn, outbox, &mut write).await {
            Step::Out(batch) => {
                for line in &batch.lines {
                    if sender.send_text(line).await.is_err() {
                        return;
                    }
                }
                if batch.reader_stalled {
                    let _ = io::run(session::make_room(port.clone())).await;
                }
                if let Some(end) = batch.end {
                    let (code, reason) = close_for(&end);
                    let _ = conn.close(code, &reason).await;
                    return;
                }
            }
            Step::In(Some(Message::Text(text))) => {
                let mut data = Vec::with_capacity(text.as_str().len() + 1);
                data.extend_from_slice(text.as_str().as_bytes());
                data.push(b'\n');
                let port = port.clone();
                // A failed write (the child closed its stdin or exited) is not an error of
                // the connection: the child's exit, if any, closes it.
                write = Some(Box::pin(async move { drop(io::run(session::write(port, data)).await) }));
            }
            Step::In(Some(_binary)) => {
                let _ = conn.close(CloseCode::UNSUPPORTED_DATA, "binary messages are not supported").await;
                return;
            }
            Step::In(None) => return,
            Step::Written => write = None,
        }
    }
}

/// Waits for the child's output, the write in flight, or (when none is) the next message.
async fn next_step(conn: &mut Connection, outbox: &Outbox, write: &mut Option<Write>) -> Step {
    poll_fn(|cx| {
        if let Poll::Ready(batch) = outbox.poll_take(cx) {
            return Poll::Ready(Step::Out(batch));
        }
        match write.as_mut() {
            Some(w) => w.as_mut().poll(cx).map(|()| Step::Written),
            // `recv` is a poll of the host's connection: dropping it unfinished loses nothing.
            None => pin!(conn.recv()).poll(cx).map(Step::In),
        }
    })
    .await
}

/// The close code and reason for how the child ended.
fn close_for(end: &End) -> (CloseCode, String) {
    match end {
        End::Exited(status) if status.success() => (CloseCode::NORMAL, String::new()),
        End::Exited(status) => (CloseCode::INTERNAL_ERROR, format!("program ended: {status}")),
        End::Failed(why) => (CloseCode::INTERNAL_ERROR, why.chars().take(100).collect()),
    }
}
