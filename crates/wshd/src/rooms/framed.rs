//! [`Framed`]: one room message framed for each kind of member. The plain frame is built
//! once per publish and shared by every member. A member whose connection agreed to
//! permessage-deflate with `server_no_context_takeover` (the default answer, decision 0019)
//! gets a compressed frame instead: made when the first member with its parameters is
//! reached and shared by the others with the same parameters, so a publish costs one
//! deflate per distinct set of parameters (in practice one), not one per member. A message
//! below the agreed minimum size, or one that would not shrink, goes plain (RFC 7692 lets
//! any message go uncompressed).

use bytes::Bytes;

use crate::metrics::rooms::ROOMS;
use crate::ws::session::Mailbox;
use crate::ws::transport::{SharedDeflate, server_deflated_frame};

/// One message's frames; see the module docs.
pub(super) struct Framed<'a> {
    /// The whole plain frame; the payload is its last `payload_len` bytes.
    plain: &'a Bytes,
    payload_len: usize,
    /// Compressed frames made so far (`None`: the plain frame serves those parameters).
    deflated: Vec<(SharedDeflate, Option<Bytes>)>,
    /// Compressed frames handed out (for `/metrics`, counted when dropped).
    compressed_out: u64,
}

impl<'a> Framed<'a> {
    /// The frames of `plain`, a frame from `server_message_frame` of `payload_len` bytes.
    pub(super) fn new(plain: &'a Bytes, payload_len: usize) -> Framed<'a> {
        Framed { plain, payload_len, deflated: Vec::new(), compressed_out: 0 }
    }

    /// The frame for `mailbox`'s connection.
    #[inline]
    pub(super) fn for_mailbox(&mut self, mailbox: &Mailbox) -> Bytes {
        match mailbox.deflate() {
            None => self.plain.clone(),
            Some(params) => self.deflated(params),
        }
    }

    /// The compressed frame for `params` (made on first use), or the plain one when
    /// compressing does not pay.
    #[inline(never)]
    fn deflated(&mut self, params: SharedDeflate) -> Bytes {
        match self.compressed(params) {
            Some(frame) => {
                self.compressed_out += 1;
                frame
            }
            None => self.plain.clone(),
        }
    }

    /// The compressed frame for `params`, made on first use.
    fn compressed(&mut self, params: SharedDeflate) -> Option<Bytes> {
        if let Some((_, frame)) = self.deflated.iter().find(|(made_for, _)| *made_for == params) {
            return frame.clone();
        }
        let payload = &self.plain[self.plain.len().saturating_sub(self.payload_len)..];
        let frame = params.compress(payload).map(|compressed| server_deflated_frame(self.plain, &compressed));
        self.deflated.push((params, frame.clone()));
        frame
    }
}

impl Drop for Framed<'_> {
    /// Counts the compressions and the compressed frames handed out in `/metrics`.
    fn drop(&mut self) {
        if !self.deflated.is_empty() {
            let made = self.deflated.iter().filter(|(_, frame)| frame.is_some()).count();
            ROOMS.compressed(made as u64, self.compressed_out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeflateSettings;
    use crate::ws::session::{MailboxLimits, Overflow, Pushed};
    use crate::ws::transport::{DataKind, negotiate_deflate, server_message_frame};

    fn mailbox(offer: Option<&str>) -> Mailbox {
        let limits = MailboxLimits { max_bytes: 1 << 20, max_frames: 16, overflow: Overflow::Close };
        let deflate = offer
            .and_then(|offer| negotiate_deflate(&[offer], &DeflateSettings::default()))
            .and_then(|agreement| agreement.shared_server_side());
        Mailbox::new(limits, deflate)
    }

    #[test]
    fn one_compression_per_set_of_parameters_shared_by_its_members() {
        let text = "the same words again and again, ".repeat(16);
        let plain = server_message_frame(DataKind::Text, text.as_bytes()).unwrap_or_default();
        let mut framed = Framed::new(&plain, text.len());
        let (browser, window_10) =
            (Some("permessage-deflate"), Some("permessage-deflate; server_max_window_bits=10"));
        let mailboxes =
            [mailbox(None), mailbox(browser), mailbox(browser), mailbox(window_10), mailbox(window_10)];
        for mailbox in &mailboxes {
            assert_eq!(mailbox.push(framed.for_mailbox(mailbox), text.len()), Pushed::Queued { dropped: 0 });
        }
        let frames: Vec<Bytes> = mailboxes.iter().map(|m| m.drain()[0].clone()).collect();
        assert_eq!(frames[0].as_ptr(), plain.as_ptr(), "no extension: the plain frame itself");
        assert_eq!(frames[1].as_ptr(), frames[2].as_ptr(), "one compressed buffer for both");
        assert_eq!(frames[3].as_ptr(), frames[4].as_ptr(), "and one for the other window");
        assert_ne!(frames[1].as_ptr(), frames[3].as_ptr());
        assert_eq!(framed.deflated.len(), 2, "two compressions for four members");
        for frame in &frames[1..] {
            assert_eq!(frame[0], 0xC1, "FIN, RSV1, text");
            assert!(frame.len() < plain.len() / 4);
        }
    }
}
