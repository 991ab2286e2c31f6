//! Incremental UTF-8 validation: text arrives in frames and TCP chunks that may split a
//! code point; an invalid byte must fail the connection at once (RFC 6455 §8.1, "fail fast"),
//! not when the message ends.

/// Validates a text message piece by piece.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Validator {
    /// The bytes of a code point split across pieces.
    pending: [u8; 4],
    pending_len: usize,
}

/// The length of the UTF-8 sequence a leading byte starts (0 for an invalid leading byte).
fn sequence_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

impl Utf8Validator {
    /// Checks the next piece; `Err` as soon as the text so far cannot be valid UTF-8.
    pub(crate) fn feed(&mut self, mut piece: &[u8]) -> Result<(), ()> {
        if self.pending_len > 0 {
            let needed = sequence_len(self.pending[0]);
            let take = (needed - self.pending_len).min(piece.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&piece[..take]);
            self.pending_len += take;
            piece = &piece[take..];
            match std::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() => return Err(()),
                Err(_) => return Ok(()), // still incomplete, and `piece` is used up
            }
        }
        match std::str::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(()),
            Err(e) => {
                let tail = &piece[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
        }
    }

    /// Whether the text ended on a code-point boundary.
    pub(crate) fn is_complete(&self) -> bool {
        self.pending_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_in_pieces(bytes: &[u8], split: usize) -> Option<bool> {
        let mut v = Utf8Validator::default();
        for piece in bytes.chunks(split.max(1)) {
            if v.feed(piece).is_err() {
                return Some(false);
            }
        }
        v.is_complete().then_some(true)
    }

    #[test]
    fn agrees_with_std_for_every_split() {
        let samples: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            "𝄞 music".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"abc\xff",
            b"\xe0\x80",
        ];
        for bytes in samples {
            let expected = std::str::from_utf8(bytes).is_ok();
            for split in 1..=bytes.len() {
                let got = valid_in_pieces(bytes, split);
                if expected {
                    assert_eq!(got, Some(true), "{bytes:?} split {split}");
                } else {
                    assert_ne!(got, Some(true), "{bytes:?} split {split}");
                }
            }
        }
    }

    #[test]
    fn fails_fast_on_the_first_bad_byte() {
        let mut v = Utf8Validator::default();
        assert!(v.feed(b"hello \xce").is_ok());
        assert!(v.feed(b"\xba more").is_ok());
        assert!(v.feed(b"\xed\xa0").is_err(), "a surrogate is refused before the sequence ends");
    }

    #[test]
    fn an_unfinished_code_point_is_incomplete() {
        let mut v = Utf8Validator::default();
        assert!(v.feed(b"\xe2\x82").is_ok());
        assert!(!v.is_complete());
    }
}
