//! permessage-deflate (RFC 7692): negotiating the offer, and compressing/decompressing
//! messages.
//!
//! Memory: a compressor costs about `2^(window+2) + 2^17` bytes plus ~6 KiB (zlib's default
//! memory level 8, which flate2 does not let us change: 256 KiB for window 15); a decompressor about 7 KiB plus `2^window` (39 KiB for
//! window 15). Both are created on first use, so a connection that negotiated the extension
//! but sends nothing compressed costs nothing extra.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's name.
const NAME: &str = "permessage-deflate";

/// Server-side policy (`[websocket.deflate]`).
pub(crate) type DeflatePolicy = crate::config::DeflateSettings;

/// What was agreed with the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Agreement {
    /// The response header value.
    pub(crate) response: String,
    /// Window bits the server compresses with (8 means: never compress, see `compress`).
    pub(crate) server_window_bits: u8,
    /// Reset the compressor after every message.
    pub(crate) server_no_context_takeover: bool,
    /// The client resets its compressor after every message, so we reset our decompressor.
    pub(crate) client_no_context_takeover: bool,
    /// Compression level.
    pub(crate) level: u32,
    /// Smallest message worth compressing.
    pub(crate) min_message_bytes: usize,
}

/// One offer's parameters, or `None` if the offer is invalid or asks for what we cannot do.
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<Option<u8>>,
}

fn window_bits(value: &str) -> Option<u8> {
    let value = value.trim().trim_matches('"');
    // RFC 7692 §7.1.2: 1*DIGIT with no leading zero, 8..15.
    if value.is_empty() || value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

fn parse_offer(params: &[&str]) -> Option<Offer> {
    let mut offer = Offer::default();
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (param.trim(), None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) if !offer.server_no_context_takeover => {
                offer.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !offer.client_no_context_takeover => {
                offer.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(v)) if offer.server_max_window_bits.is_none() => {
                offer.server_max_window_bits = Some(window_bits(v)?);
            }
            ("client_max_window_bits", None) if offer.client_max_window_bits.is_none() => {
                offer.client_max_window_bits = Some(None);
            }
            ("client_max_window_bits", Some(v)) if offer.client_max_window_bits.is_none() => {
                offer.client_max_window_bits = Some(Some(window_bits(v)?));
            }
            _ => return None, // unknown, duplicated or malformed parameter: decline this offer
        }
    }
    Some(offer)
}

/// Picks the first acceptable permessage-deflate offer from the `Sec-WebSocket-Extensions`
/// header values. Offers we cannot accept are declined (the handshake still succeeds).
pub(crate) fn negotiate(header_values: &[&str], policy: &DeflatePolicy) -> Option<Agreement> {
    if !policy.enabled {
        return None;
    }
    let offers = header_values.iter().flat_map(|v| v.split(','));
    for offer in offers {
        let mut parts = offer.split(';');
        let name = parts.next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case(NAME) {
            continue;
        }
        let params: Vec<&str> = parts.filter(|p| !p.trim().is_empty()).collect();
        let Some(offer) = parse_offer(&params) else { continue };

        let mut response = String::from(NAME);
        let server_no_context_takeover =
            offer.server_no_context_takeover || policy.server_no_context_takeover;
        if server_no_context_takeover {
            response.push_str("; server_no_context_takeover");
        }
        let client_no_context_takeover =
            offer.client_no_context_takeover || policy.client_no_context_takeover;
        if client_no_context_takeover {
            response.push_str("; client_no_context_takeover");
        }
        let mut server_window_bits = policy.server_max_window_bits.clamp(9, 15);
        if let Some(bits) = offer.server_max_window_bits {
            server_window_bits = server_window_bits.min(bits);
            response.push_str(&format!("; server_max_window_bits={server_window_bits}"));
        }
        // Our decompressor always uses a 15-bit window, which reads any smaller window, so we
        // never need to limit the client's; we only echo a value the client chose.
        if let Some(Some(bits)) = offer.client_max_window_bits {
            response.push_str(&format!("; client_max_window_bits={bits}"));
        }
        return Some(Agreement {
            response,
            server_window_bits,
            server_no_context_takeover,
            client_no_context_takeover,
            level: policy.level.min(9),
            min_message_bytes: policy.min_message_bytes,
        });
    }
    None
}

/// The trailer a sync flush ends with; stripped on send, restored on receive (§7.2.1).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Per-connection compression state (created lazily).
pub(crate) struct DeflateCodec {
    agreement: Agreement,
    compressor: Option<Compress>,
    decompressor: Option<Decompress>,
}

impl std::fmt::Debug for DeflateCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeflateCodec")
            .field("agreement", &self.agreement)
            .field("compressor", &self.compressor.is_some())
            .field("decompressor", &self.decompressor.is_some())
            .finish()
    }
}

/// Decompression failed or exceeded the size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The data is not valid deflate (1007? No: RFC 7692 says fail the connection; 1002).
    Corrupt,
    /// The inflated message is larger than allowed (1009).
    TooBig,
}

impl DeflateCodec {
    pub(crate) fn new(agreement: Agreement) -> DeflateCodec {
        DeflateCodec { agreement, compressor: None, decompressor: None }
    }

    /// Whether an outgoing message of `len` bytes should be compressed.
    pub(crate) fn wants_to_compress(&self, len: usize) -> bool {
        // A window of 8 bits cannot be produced by zlib's raw deflate; such connections get
        // uncompressed messages, which permessage-deflate allows (RSV1 clear).
        self.agreement.server_window_bits >= 9 && len >= self.agreement.min_message_bytes
    }

    /// Compresses one message (or one fragment, `last` = final fragment).
    pub(crate) fn compress(&mut self, data: &[u8], last: bool) -> Vec<u8> {
        let a = &self.agreement;
        let compressor = self.compressor.get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(a.level), false, a.server_window_bits)
        });
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let start_in = compressor.total_in();
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(256));
            }
            let consumed = (compressor.total_in() - start_in) as usize;
            let (before_in, before_out) = (consumed, out.len());
            if compressor.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync).is_err() {
                break; // cannot happen with valid parameters; send what we have
            }
            let consumed = (compressor.total_in() - start_in) as usize;
            // zlib's rule: the flush is complete once all input is in and output space is left.
            if consumed == data.len() && out.len() < out.capacity() {
                break;
            }
            if consumed == before_in && out.len() == before_out && out.len() < out.capacity() {
                break; // no progress possible
            }
        }
        if last {
            if out.ends_with(&TRAILER) {
                out.truncate(out.len() - TRAILER.len());
            }
            if out.is_empty() {
                out.push(0x00); // §7.2.3.6: an empty message as one empty stored-block byte
            }
            if self.agreement.server_no_context_takeover {
                compressor.reset();
            }
        }
        out
    }

    /// Inflates `input` (a piece of a compressed message), appending to `out`; at the end of
    /// the message pass `last` to add the trailer. `limit` caps `out`'s length.
    pub(crate) fn decompress(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let decompressor =
            self.decompressor.get_or_insert_with(|| Decompress::new_with_window_bits(false, 15));
        // A message may end its deflate stream with a final block (BFINAL); what follows it
        // is ignored and the next message starts a fresh stream.
        let mut ended = self::inflate(decompressor, input, out, limit)?;
        if last {
            if !ended {
                ended = self::inflate(decompressor, &TRAILER, out, limit)?;
            }
            if ended || self.agreement.client_no_context_takeover {
                decompressor.reset(false);
            }
        }
        Ok(())
    }
}

/// Inflates all of `input`; `Ok(true)` when the deflate stream ended (a block with BFINAL).
fn inflate(d: &mut Decompress, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<bool, InflateError> {
    let start_in = d.total_in();
    loop {
        if out.capacity() - out.len() < 1024 {
            // Grow geometrically, but never far past the limit.
            let want = out.capacity().clamp(4096, 256 * 1024);
            out.reserve(want.min(limit.saturating_sub(out.len()) + 1024));
        }
        let consumed = (d.total_in() - start_in) as usize;
        let (before_in, before_out) = (consumed, out.len());
        let status = d
            .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        let consumed = (d.total_in() - start_in) as usize;
        if status == Status::StreamEnd {
            return Ok(true);
        }
        if consumed == input.len() && out.len() < out.capacity() {
            return Ok(false);
        }
        if consumed == before_in && out.len() == before_out && out.len() < out.capacity() {
            return Err(InflateError::Corrupt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agree(offer: &str) -> Option<Agreement> {
        negotiate(&[offer], &DeflatePolicy::default())
    }

    #[test]
    fn negotiates_every_parameter_the_rfc_allows() {
        assert_eq!(agree("permessage-deflate").map(|a| a.response), Some("permessage-deflate".into()));
        assert_eq!(
            agree("permessage-deflate; client_max_window_bits").map(|a| a.response),
            Some("permessage-deflate".into()),
            "what Chromium offers"
        );
        let a = agree("permessage-deflate; server_no_context_takeover; server_max_window_bits=10");
        assert_eq!(
            a.as_ref().map(|a| a.response.as_str()),
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
        );
        assert_eq!(a.map(|a| (a.server_window_bits, a.server_no_context_takeover)), Some((10, true)));
        let a = agree("permessage-deflate; client_no_context_takeover; client_max_window_bits=9");
        assert_eq!(
            a.map(|a| a.response),
            Some("permessage-deflate; client_no_context_takeover; client_max_window_bits=9".into())
        );
        assert_eq!(
            agree("permessage-deflate; server_max_window_bits=8").map(|a| a.server_window_bits),
            Some(8)
        );
    }

    #[test]
    fn declines_what_it_cannot_honour_and_takes_the_next_offer() {
        assert_eq!(agree("permessage-deflate; server_max_window_bits=16"), None);
        assert_eq!(agree("permessage-deflate; server_max_window_bits=010"), None);
        assert_eq!(agree("permessage-deflate; server_max_window_bits"), None);
        assert_eq!(agree("permessage-deflate; foo=1"), None);
        assert_eq!(agree("permessage-deflate; server_no_context_takeover; server_no_context_takeover"), None);
        assert_eq!(agree("x-webkit-deflate-frame"), None);
        let a = agree("permessage-deflate; bogus, permessage-deflate; client_max_window_bits");
        assert_eq!(a.map(|a| a.response), Some("permessage-deflate".into()));
        assert_eq!(
            negotiate(&["permessage-deflate"], &DeflatePolicy { enabled: false, ..Default::default() }),
            None
        );
    }

    #[test]
    fn round_trips_messages_with_and_without_context_takeover() {
        for offer in [
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ] {
            let agreement = agree(offer).unwrap_or_else(|| panic!("{offer}"));
            let mut server = DeflateCodec::new(agreement.clone());
            let mut client = DeflateCodec::new(agreement);
            for message in [&b"hello hello hello hello"[..], b"", &[7u8; 100_000], b"hello hello again"] {
                let compressed = server.compress(message, true);
                let mut out = Vec::new();
                client.decompress(&compressed, true, &mut out, 1 << 20).unwrap_or_else(|e| panic!("{e:?}"));
                assert_eq!(out, message);
            }
        }
    }

    #[test]
    fn inflating_past_the_limit_fails() {
        let agreement = agree("permessage-deflate").unwrap_or_else(|| panic!("agree"));
        let mut server = DeflateCodec::new(agreement.clone());
        let bomb = server.compress(&vec![0u8; 1 << 20], true);
        assert!(bomb.len() < 2000);
        let mut client = DeflateCodec::new(agreement.clone());
        let mut out = Vec::new();
        assert_eq!(client.decompress(&bomb, true, &mut out, 1000), Err(InflateError::TooBig));
        let mut fresh = DeflateCodec::new(agreement);
        assert_eq!(
            fresh.decompress(b"\xff\xff\xff\xff", true, &mut Vec::new(), 1000),
            Err(InflateError::Corrupt)
        );
    }
}
