//! [`WsIo`]: the I/O shell around the codec. It reads what the socket has into the
//! [`Decoder`] and hands each event on, and writes the [`Encoder`]'s queue to the socket,
//! always with the caller's task context. What the events mean is the caller's business.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use wshd_sdk::CloseCode;

use crate::budget::{BUDGET, Charge, Refusal};
use crate::ws::codec::deflate::Agreement;
use crate::ws::codec::{DataKind, Decoder, Encoder, Event, Failure, Frame, InvalidFrame, Limits, Role};

/// Size of the per-thread read scratch buffer: the most one read takes from a socket.
const SCRATCH_BYTES: usize = 64 * 1024;

/// Queues up to this many bytes are gathered into one buffer and written with one `send`
/// (cheaper in the kernel than `writev` of a header and a payload); so is a data frame
/// written straight through.
const SMALL_WRITE: usize = 1024;

thread_local! {
    /// Where reads land: the connection keeps only what the decoder holds between reads, so
    /// an idle connection owns no read buffer.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_BYTES]);
    /// Where a small queue, or a small frame written straight through, is gathered for one
    /// `send`.
    static WRITE_SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(SMALL_WRITE));
}

/// What a read step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadStatus {
    /// Bytes were read and decoded; read again.
    Data,
    /// Nothing more will be read: the stream ended or failed, the peer's close frame arrived,
    /// or the rest cannot be decoded.
    Ended,
}

/// A WebSocket connection's socket, decoder and write queue.
pub(crate) struct WsIo<IO> {
    io: IO,
    decoder: Decoder,
    encoder: Encoder,
    /// What the decoder and the write queue hold, charged to the in-flight budget.
    charge: Charge,
    /// The budget refused this connection once (it is counted once, and closed).
    over_budget: bool,
    /// The write queue grew past the budget: the session closes the connection (1013).
    write_refused: bool,
}

impl<IO> std::fmt::Debug for WsIo<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsIo").field("decoder", &self.decoder).field("encoder", &self.encoder).finish()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> WsIo<IO> {
    /// The `role` end of a connection over `io` whose handshake is done; `deflate` when
    /// permessage-deflate was agreed.
    pub(crate) fn new(io: IO, role: Role, limits: Limits, deflate: Option<Agreement>) -> WsIo<IO> {
        let encoder = Encoder::new(role, deflate.clone());
        let decoder = Decoder::new(role, limits, deflate);
        WsIo { io, decoder, encoder, charge: Charge::none(), over_budget: false, write_refused: false }
    }

    /// Charges what this connection holds to the process's in-flight budget of `limit`
    /// bytes (0: counted, never refused).
    pub(crate) fn with_budget(mut self, limit: usize) -> WsIo<IO> {
        self.charge = Charge::new(limit);
        self
    }

    /// See [`Decoder::partial_progress`].
    pub(crate) fn partial_progress(&self) -> Option<u64> {
        self.decoder.partial_progress()
    }

    /// Fails the connection with `failure`, freeing the message in progress; the failure is
    /// handed to `on_event` like the decoder's own.
    pub(crate) fn abandon_message(
        &mut self,
        failure: Failure,
        mut on_event: impl FnMut(&mut Encoder, Event),
    ) {
        if let Some(event) = self.decoder.abandon(failure) {
            on_event(&mut self.encoder, event);
        }
        // Gives back what was freed; growth of the write queue is refused by its own path.
        let _ = self.settle_budget();
    }

    /// Whether the write queue was refused by the budget (the session closes with 1013).
    pub(crate) fn take_write_refused(&mut self) -> bool {
        std::mem::take(&mut self.write_refused)
    }

    /// The first refusal is counted; later ones are not (the connection is closing).
    fn first_refusal(&mut self, refusal: Refusal) -> bool {
        if self.over_budget {
            return false;
        }
        self.over_budget = true;
        BUDGET.refused(refusal);
        true
    }

    /// Charges what the decoder and the write queue hold now.
    #[inline]
    fn settle_budget(&mut self) -> Result<(), Refusal> {
        self.charge.settle(self.decoder.held_bytes() + self.encoder.queued_bytes())
    }

    /// After a read: a message that the budget cannot hold is given up (its memory freed)
    /// and the connection failed with 1009 or 1013.
    fn settle_read(&mut self, on_event: &mut impl FnMut(&mut Encoder, Event)) {
        let Err(refusal) = self.settle_budget() else { return };
        if !self.first_refusal(refusal) {
            return;
        }
        let failure = match refusal {
            Refusal::TooBig => {
                Failure { code: CloseCode::MESSAGE_TOO_BIG, reason: "message too big for the memory budget" }
            }
            Refusal::Exhausted => {
                Failure { code: CloseCode::TRY_AGAIN_LATER, reason: "memory budget exhausted" }
            }
        };
        tracing::debug!(code = failure.code.as_u16(), "in-flight budget refused a message");
        self.abandon_message(failure, on_event);
    }

    /// The write queue, to queue frames on (they go out with [`poll_flush`](Self::poll_flush)).
    pub(crate) fn encoder(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    /// Whether an outgoing fragmented message is open.
    pub(crate) fn is_mid_message(&self) -> bool {
        self.encoder.is_mid_message()
    }

    /// Bytes queued but not yet written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.encoder.queued_bytes()
    }

    /// See [`Encoder::queued_behind_front`].
    pub(crate) fn queued_behind_front(&self) -> usize {
        self.encoder.queued_behind_front()
    }

    /// Reads what the socket has and hands every event it completes to `on_event`, in order,
    /// with the write queue (to answer it).
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        mut on_event: impl FnMut(&mut Encoder, Event),
    ) -> Poll<ReadStatus> {
        if self.decoder.is_ended() {
            return Poll::Ready(ReadStatus::Ended);
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(_)) => Poll::Ready(ReadStatus::Ended),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(ReadStatus::Ended),
                Poll::Ready(Ok(())) => {
                    let mut input = buf.filled();
                    while let Some(event) = self.decoder.decode(&mut input) {
                        on_event(&mut self.encoder, event);
                    }
                    self.settle_read(&mut on_event);
                    Poll::Ready(if self.decoder.is_ended() { ReadStatus::Ended } else { ReadStatus::Data })
                }
            }
        })
    }

    /// Sends a data frame (see [`Encoder::data_frame`]). A small uncompressed frame with
    /// nothing queued before it is written straight from `data`, with the caller's context,
    /// so the common case (a short reply) costs no allocation; what the socket does not take
    /// is queued for [`poll_flush`](Self::poll_flush), like any other frame.
    pub(crate) fn poll_send_data(
        &mut self,
        cx: &mut Context<'_>,
        kind: DataKind,
        fin: bool,
        data: &[u8],
    ) -> Result<(), InvalidFrame> {
        let frame = self.encoder.data_frame(kind, fin, data)?;
        match frame.borrowed_payload() {
            Some(payload) if payload.len() <= SMALL_WRITE && self.encoder.is_empty() => {
                self.write_through(cx, frame);
            }
            _ => self.encoder.queue(frame),
        }
        Ok(())
    }

    /// Writes `frame` in one `send`, queueing what the socket did not take.
    fn write_through(&mut self, cx: &mut Context<'_>, frame: Frame<'_>) {
        let mut buf = WRITE_SCRATCH.with(RefCell::take);
        buf.clear();
        buf.extend_from_slice(frame.header());
        buf.extend_from_slice(frame.borrowed_payload().unwrap_or_default());
        let written = match Pin::new(&mut self.io).poll_write(cx, &buf) {
            Poll::Ready(Ok(n)) => n,
            // An error comes back from `poll_flush`, which writes the frame again.
            Poll::Ready(Err(_)) | Poll::Pending => 0,
        };
        if written < buf.len() {
            self.encoder.queue_rest(frame, written);
        }
        WRITE_SCRATCH.with(|cell| cell.replace(buf));
    }

    /// Charges the write queue after a flush; growth past the budget marks the connection
    /// for a close (the queue is already bounded by `max_send_queue_bytes`).
    fn settle_write(&mut self) {
        if let Err(refusal) = self.settle_budget()
            && self.first_refusal(refusal)
        {
            self.write_refused = true;
        }
    }

    /// Writes the queue to the socket: small queues copied into one buffer and written with
    /// `send`, larger ones with `writev`, without a copy.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.encoder.is_empty() {
            let polled = if self.encoder.queued_bytes() <= SMALL_WRITE {
                // Taken out of (and put back into) its cell, so no borrow spans the write.
                let mut buf = WRITE_SCRATCH.with(RefCell::take);
                buf.clear();
                self.encoder.gather_into(&mut buf);
                let polled = Pin::new(&mut self.io).poll_write(cx, &buf);
                WRITE_SCRATCH.with(|cell| cell.replace(buf));
                polled
            } else {
                let mut slices = [io::IoSlice::new(&[]); 32];
                let count = self.encoder.unwritten_slices(&mut slices);
                Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count])
            };
            match polled {
                Poll::Pending => {
                    self.settle_write();
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.encoder.consume(n),
            }
        }
        self.settle_write();
        Pin::new(&mut self.io).poll_flush(cx)
    }
}
