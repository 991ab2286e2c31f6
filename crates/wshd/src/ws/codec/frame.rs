//! Frame headers (RFC 6455 §5.2): parsing what the peer sends, encoding what we send.

/// Opcodes.
pub(crate) const OP_CONTINUATION: u8 = 0x0;
/// Text frame.
pub(crate) const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub(crate) const OP_BINARY: u8 = 0x2;
/// Close frame.
pub(crate) const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub(crate) const OP_PING: u8 = 0x9;
/// Pong frame.
pub(crate) const OP_PONG: u8 = 0xa;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    pub(crate) rsv1: bool,
    pub(crate) rsv23: bool,
    pub(crate) opcode: u8,
    pub(crate) mask: Option<[u8; 4]>,
    pub(crate) payload_len: u64,
    /// Bytes the header itself took.
    pub(crate) header_len: usize,
}

impl Header {
    /// Whether the opcode is a control frame's.
    pub(crate) fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Why a header is invalid (all are protocol errors, 1002).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// The 64-bit length has its most significant bit set.
    LengthOverflow,
}

/// Parses a header from the start of `buf`: `Ok(None)` when more bytes are needed.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let masked = b1 & 0x80 != 0;
    let (payload_len, mut at) = match b1 & 0x7f {
        126 => {
            let Some(b) = buf.get(2..4) else { return Ok(None) };
            // Non-minimal length encodings are accepted, as mod_pywebsocket does.
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else { return Ok(None) };
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(b);
            let len = u64::from_be_bytes(bytes);
            if len >> 63 != 0 {
                return Err(HeaderError::LengthOverflow);
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        let Some(b) = buf.get(at..at + 4) else { return Ok(None) };
        at += 4;
        Some([b[0], b[1], b[2], b[3]])
    } else {
        None
    };
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        rsv23: b0 & 0x30 != 0,
        opcode: b0 & 0x0f,
        mask,
        payload_len,
        header_len: at,
    }))
}

/// An encoded frame header: unmasked (a server's), or with a masking key (a client's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncodedHeader {
    bytes: [u8; 14],
    len: u8,
}

impl EncodedHeader {
    /// Encodes an unmasked header for a payload of `len` bytes.
    pub(crate) fn new(fin: bool, rsv1: bool, opcode: u8, len: usize) -> EncodedHeader {
        let mut bytes = [0u8; 14];
        bytes[0] = (if fin { 0x80 } else { 0 }) | (if rsv1 { 0x40 } else { 0 }) | opcode;
        let used = if len < 126 {
            bytes[1] = len as u8;
            2
        } else if len <= 0xffff {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        EncodedHeader { bytes, len: used }
    }

    /// No header: the frame's header is already at the front of its payload (a pre-built
    /// frame, see [`Encoder::queue_prebuilt`](super::Encoder::queue_prebuilt)).
    pub(crate) const fn empty() -> EncodedHeader {
        EncodedHeader { bytes: [0; 14], len: 0 }
    }

    /// The same header with the mask bit set and `key` appended (the payload must be masked
    /// with it).
    pub(crate) fn with_mask(mut self, key: [u8; 4]) -> EncodedHeader {
        let at = usize::from(self.len);
        self.bytes[1] |= 0x80;
        self.bytes[at..at + 4].copy_from_slice(&key);
        self.len += 4;
        self
    }

    /// The header bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_length_forms() {
        let h = parse_header(&[0x81, 0x85, 1, 2, 3, 4]).ok().flatten();
        assert_eq!(
            h.map(|h| (h.fin, h.opcode, h.payload_len, h.header_len, h.mask)),
            Some((true, 1, 5, 6, Some([1, 2, 3, 4])))
        );
        let h = parse_header(&[0x02, 0xfe, 0x01, 0x00, 9, 9, 9, 9]).ok().flatten();
        assert_eq!(h.map(|h| (h.fin, h.payload_len, h.header_len)), Some((false, 256, 8)));
        let h = parse_header(&[0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9]).ok().flatten();
        assert_eq!(h.map(|h| (h.payload_len, h.header_len)), Some((65536, 14)));
        assert_eq!(parse_header(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]), Err(HeaderError::LengthOverflow));
        assert_eq!(parse_header(&[0x82, 0x7e, 0, 5]).ok().flatten().map(|h| h.payload_len), Some(5));
        assert_eq!(parse_header(&[0x82, 0xfe, 0]), Ok(None));
        assert_eq!(parse_header(&[0x82]), Ok(None));
    }

    #[test]
    fn encodes_minimal_lengths() {
        assert_eq!(EncodedHeader::new(true, false, OP_TEXT, 5).as_bytes(), &[0x81, 5]);
        assert_eq!(EncodedHeader::new(false, true, OP_BINARY, 300).as_bytes(), &[0x42, 126, 1, 44]);
        assert_eq!(
            EncodedHeader::new(true, false, OP_BINARY, 70000).as_bytes(),
            &[0x82, 127, 0, 0, 0, 0, 0, 1, 17, 112]
        );
    }

    #[test]
    fn masked_headers_carry_the_key_and_parse_back() {
        let key = [1, 2, 3, 4];
        assert_eq!(
            EncodedHeader::new(true, false, OP_TEXT, 5).with_mask(key).as_bytes(),
            &[0x81, 0x85, 1, 2, 3, 4]
        );
        let long = EncodedHeader::new(true, false, OP_BINARY, 70000).with_mask(key);
        assert_eq!(long.as_bytes().len(), 14);
        let h = parse_header(long.as_bytes()).ok().flatten();
        assert_eq!(h.map(|h| (h.mask, h.payload_len, h.header_len)), Some((Some(key), 70000, 14)));
    }
}
