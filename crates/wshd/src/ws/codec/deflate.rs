//! permessage-deflate (RFC 7692): negotiating it (the server answering an offer, the client
//! checking the answer to its own), and compressing/decompressing messages.
//!
//! Memory (zlib-rs, measured in `docs/decisions/0019-compression-memory.md`): a compressor
//! costs `2^(window+2)` bytes of window and chains plus a 128 KiB hash table and ~112 KiB of
//! symbol buffers that zlib-rs does not shrink (its hash is fixed at 2^16 entries; memory
//! level changes only the buffers), so ~260 KiB at window 15 and still ~140 KiB at window 9;
//! a decompressor ~7 KiB plus `2^window` (39 KiB for window 15). Kept per connection, that
//! was ~340 KiB per compressed connection.
//!
//! So by default the server answers every offer with `server_no_context_takeover` and
//! `client_no_context_takeover` (§7.1.1.1 and §7.1.1.2 let a server add both unasked): each
//! message is then its own deflate stream both ways, and a direction that resets borrows its
//! context from a per-thread pool (`deflate_pool`) when a message starts and gives it back,
//! reset, when it ends. An idle compressed connection owns no zlib state at all; the cost is
//! the ratio that context takeover would have gained across messages and a reset (a 128 KiB
//! memset) per compressed message. With either `*_no_context_takeover = false` in
//! `[websocket.deflate]` the connection keeps that direction's context, created on first use
//! (a connection that never sends compressed data costs nothing extra either way).
//!
//! Decompressors always have a 15-bit window, which reads any window a client may use, so
//! nothing RFC-valid is refused. `[websocket.deflate] client_max_window_bits` limits a client
//! that offered the parameter (§7.1.2.2) — its memory and ratio, not ours: zlib-rs allocates
//! a 32 KiB inflate window whatever the window bits.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{Role, deflate_pool};

/// The extension's name.
const NAME: &str = "permessage-deflate";

/// Server-side policy (`[websocket.deflate]`).
pub(crate) type DeflatePolicy = crate::config::DeflateSettings;

/// What server and client agreed, in the RFC's terms (each end applies it through
/// [`DeflateCodec::new`] for its [`Role`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Agreement {
    /// The response header value (the server's answer, as the client received it).
    pub(crate) response: String,
    /// Window bits the server compresses with (8 means: never compress, see
    /// `wants_to_compress`).
    pub(crate) server_window_bits: u8,
    /// The server resets its compressor after every message.
    pub(crate) server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub(crate) client_no_context_takeover: bool,
    /// Window bits the client compresses with (8 means: never compress).
    pub(crate) client_window_bits: u8,
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
        // Only a client that offered the parameter may be limited (§7.1.2.2): to its own
        // value or ours, whichever is smaller; without a value in the offer, we answer only
        // when ours is below the default 15.
        let mut client_window_bits = 15;
        if let Some(offered) = offer.client_max_window_bits {
            client_window_bits = offered.unwrap_or(15).min(policy.client_max_window_bits.clamp(9, 15));
            if offered.is_some() || client_window_bits < 15 {
                response.push_str(&format!("; client_max_window_bits={client_window_bits}"));
            }
        }
        return Some(Agreement {
            response,
            server_window_bits,
            server_no_context_takeover,
            client_no_context_takeover,
            client_window_bits,
            level: policy.level.min(9),
            min_message_bytes: policy.min_message_bytes,
        });
    }
    None
}

/// What `wshd client` offers: permessage-deflate, letting the server limit our window.
pub(crate) const CLIENT_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The parameters of the server's answer to [`CLIENT_OFFER`].
#[derive(Debug, Default)]
struct ResponseParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<u8>,
}

/// Checks the server's `Sec-WebSocket-Extensions` header values against [`CLIENT_OFFER`]
/// (RFC 7692 §7): `Ok(None)` when the server did not accept permessage-deflate, `Err` naming
/// the problem when the answer is one a client must refuse (an extension or parameter we did
/// not offer, a duplicate, a bad value).
pub(crate) fn parse_response(header_values: &[&str]) -> Result<Option<Agreement>, String> {
    let mut agreement = None;
    let elements = header_values.iter().flat_map(|v| v.split(',')).map(str::trim);
    for element in elements.filter(|e| !e.is_empty()) {
        let mut parts = element.split(';');
        let name = parts.next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case(NAME) {
            return Err(format!("the server accepted extension `{name}`, which was not offered"));
        }
        if agreement.is_some() {
            return Err(format!("the server accepted {NAME} more than once"));
        }
        let params = parse_response_params(parts)?;
        agreement = Some(Agreement {
            response: element.to_owned(),
            server_window_bits: params.server_max_window_bits.unwrap_or(15),
            server_no_context_takeover: params.server_no_context_takeover,
            client_no_context_takeover: params.client_no_context_takeover,
            client_window_bits: params.client_max_window_bits.unwrap_or(15),
            level: Compression::default().level(),
            min_message_bytes: 0,
        });
    }
    Ok(agreement)
}

fn parse_response_params<'a>(params: impl Iterator<Item = &'a str>) -> Result<ResponseParams, String> {
    let mut r = ResponseParams::default();
    for param in params.map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (param, None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) => set_flag(&mut r.server_no_context_takeover, name)?,
            ("client_no_context_takeover", None) => set_flag(&mut r.client_no_context_takeover, name)?,
            ("server_max_window_bits", Some(v)) => set_bits(&mut r.server_max_window_bits, name, v)?,
            // Allowed only because the offer has `client_max_window_bits` (§7.1.2.2).
            ("client_max_window_bits", Some(v)) => set_bits(&mut r.client_max_window_bits, name, v)?,
            ("server_no_context_takeover" | "client_no_context_takeover", Some(_)) => {
                return Err(format!("{NAME} parameter `{param}`: `{name}` takes no value"));
            }
            ("server_max_window_bits" | "client_max_window_bits", None) => {
                return Err(format!("{NAME} parameter `{name}` without a value (8 to 15)"));
            }
            _ => return Err(format!("unknown {NAME} parameter `{param}`")),
        }
    }
    Ok(r)
}

fn set_flag(flag: &mut bool, name: &str) -> Result<(), String> {
    if std::mem::replace(flag, true) {
        return Err(format!("duplicate {NAME} parameter `{name}`"));
    }
    Ok(())
}

fn set_bits(slot: &mut Option<u8>, name: &str, value: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("duplicate {NAME} parameter `{name}`"));
    }
    let bits = window_bits(value)
        .ok_or_else(|| format!("{NAME} parameter `{name}={value}`: the value must be 8 to 15"))?;
    *slot = Some(bits);
    Ok(())
}

/// The agreement as one end applies it: how it compresses, and when its decompressor resets.
#[derive(Debug, Clone, Copy)]
struct OwnSide {
    /// Window bits our compressor uses (8: never compress, see `wants_to_compress`).
    window_bits: u8,
    /// Reset our compressor after every message.
    compressor_resets: bool,
    /// The peer resets its compressor after every message, so we reset our decompressor.
    decompressor_resets: bool,
}

impl OwnSide {
    /// The server applies the `server_*` parameters to what it sends; the client, the
    /// `client_*` ones.
    fn of(a: &Agreement, role: Role) -> OwnSide {
        match role {
            Role::Server => OwnSide {
                window_bits: a.server_window_bits,
                compressor_resets: a.server_no_context_takeover,
                decompressor_resets: a.client_no_context_takeover,
            },
            Role::Client => OwnSide {
                window_bits: a.client_window_bits,
                compressor_resets: a.client_no_context_takeover,
                decompressor_resets: a.server_no_context_takeover,
            },
        }
    }
}

/// The trailer a sync flush ends with; stripped on send, restored on receive (§7.2.1).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compresses all of `data` into `out`, ending with a sync flush (the trailer included).
fn sync_flush(compressor: &mut Compress, data: &[u8], out: &mut Vec<u8>) {
    let start_in = compressor.total_in();
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(256));
        }
        let consumed = (compressor.total_in() - start_in) as usize;
        let (before_in, before_out) = (consumed, out.len());
        if compressor.compress_vec(&data[consumed..], out, FlushCompress::Sync).is_err() {
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
}

/// Turns the sync-flushed end of a message into its payload: the trailer stripped (§7.2.1),
/// an empty message as one empty stored-block byte (§7.2.3.6).
fn end_message(out: &mut Vec<u8>) {
    if out.ends_with(&TRAILER) {
        out.truncate(out.len() - TRAILER.len());
    }
    if out.is_empty() {
        out.push(0x00);
    }
}

/// Parameters under which one compressed message suits every connection that has them: the
/// server resets its compressor after every message (`server_no_context_takeover`, the
/// default answer), so a message compressed once with a fresh context is valid on each of
/// them, between the connection's own messages. Rooms compress a publish once per distinct
/// value among its members (`rooms::framed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SharedDeflate {
    window_bits: u8,
    /// 0–9.
    level: u8,
    /// Saturated at `u32::MAX` (no message is that large).
    min_message_bytes: u32,
}

impl SharedDeflate {
    /// `data` compressed as one whole message (the payload of a frame with RSV1 set), or
    /// `None` when it is smaller than the agreed minimum or would not shrink.
    pub(crate) fn compress(self, data: &[u8]) -> Option<Vec<u8>> {
        if data.len() < self.min_message_bytes as usize {
            return None;
        }
        let level = u32::from(self.level);
        let mut compressor = deflate_pool::take_compressor(level, self.window_bits);
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        sync_flush(&mut compressor, data, &mut out);
        end_message(&mut out);
        compressor.reset();
        deflate_pool::give_compressor(level, self.window_bits, compressor);
        (out.len() < data.len()).then_some(out)
    }
}

impl Agreement {
    /// The server side of this agreement as [`SharedDeflate`] parameters, when messages
    /// compressed once for many connections can be sent on it: the server resets after
    /// every message and compresses at all (window ≥ 9, see `wants_to_compress`).
    pub(crate) fn shared_server_side(&self) -> Option<SharedDeflate> {
        (self.server_no_context_takeover && self.server_window_bits >= 9).then_some(SharedDeflate {
            window_bits: self.server_window_bits,
            level: u8::try_from(self.level).unwrap_or(9),
            min_message_bytes: u32::try_from(self.min_message_bytes).unwrap_or(u32::MAX),
        })
    }
}

/// Per-connection compression state (created lazily).
pub(crate) struct DeflateCodec {
    agreement: Agreement,
    own: OwnSide,
    compressor: Option<Compress>,
    decompressor: Option<Decompress>,
}

impl std::fmt::Debug for DeflateCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeflateCodec")
            .field("agreement", &self.agreement)
            .field("own", &self.own)
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
    /// The compression state of the `role` end of a connection with this agreement.
    pub(crate) fn new(agreement: Agreement, role: Role) -> DeflateCodec {
        let own = OwnSide::of(&agreement, role);
        DeflateCodec { agreement, own, compressor: None, decompressor: None }
    }

    /// Whether an outgoing message of `len` bytes should be compressed.
    pub(crate) fn wants_to_compress(&self, len: usize) -> bool {
        // A window of 8 bits cannot be produced by zlib's raw deflate; such connections get
        // uncompressed messages, which permessage-deflate allows (RSV1 clear).
        self.own.window_bits >= 9 && len >= self.agreement.min_message_bytes
    }

    /// Compresses one message (or one fragment, `last` = final fragment).
    pub(crate) fn compress(&mut self, data: &[u8], last: bool) -> Vec<u8> {
        let (level, window_bits) = (self.agreement.level, self.own.window_bits);
        let pooled = self.own.compressor_resets;
        let compressor = self.compressor.get_or_insert_with(|| {
            if pooled {
                deflate_pool::take_compressor(level, window_bits)
            } else {
                Compress::new_with_window_bits(Compression::new(level), false, window_bits)
            }
        });
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        sync_flush(compressor, data, &mut out);
        if last {
            end_message(&mut out);
            if pooled {
                compressor.reset();
                if let Some(idle) = self.compressor.take() {
                    deflate_pool::give_compressor(level, window_bits, idle);
                }
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
        let pooled = self.own.decompressor_resets;
        // Always a 15-bit window: it reads whatever window the peer uses (zlib-rs allocates
        // 32 KiB for any window size, so a smaller one would save nothing).
        let decompressor = self.decompressor.get_or_insert_with(|| {
            if pooled {
                deflate_pool::take_decompressor()
            } else {
                Decompress::new_with_window_bits(false, 15)
            }
        });
        // A message may end its deflate stream with a final block (BFINAL); what follows it
        // is ignored and the next message starts a fresh stream.
        let mut ended = self::inflate(decompressor, input, out, limit)?;
        if last {
            if !ended {
                ended = self::inflate(decompressor, &TRAILER, out, limit)?;
            }
            if ended || pooled {
                decompressor.reset(false);
            }
            if pooled && let Some(idle) = self.decompressor.take() {
                deflate_pool::give_decompressor(idle);
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

    /// The policy before issue 16 (context takeover both ways), which echoes the offer.
    fn takeover() -> DeflatePolicy {
        DeflatePolicy {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            ..Default::default()
        }
    }

    fn agree(offer: &str) -> Option<Agreement> {
        negotiate(&[offer], &takeover())
    }

    #[test]
    fn by_default_both_directions_reset_after_every_message_whatever_the_offer() {
        let both = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        for (offer, response) in [
            ("permessage-deflate", both.to_owned()),
            ("permessage-deflate; client_max_window_bits", both.to_owned()),
            ("permessage-deflate; server_no_context_takeover", both.to_owned()),
            ("permessage-deflate; client_max_window_bits=10", format!("{both}; client_max_window_bits=10")),
            ("permessage-deflate; server_max_window_bits=9", format!("{both}; server_max_window_bits=9")),
        ] {
            let a = negotiate(&[offer], &DeflatePolicy::default());
            assert_eq!(a.as_ref().map(|a| a.response.as_str()), Some(response.as_str()), "{offer}");
            assert!(a.is_some_and(|a| a.server_no_context_takeover && a.client_no_context_takeover));
        }
    }

    #[test]
    fn shared_compression_is_offered_only_where_the_server_resets_after_every_message() {
        let shared = |offer: &str, policy: &DeflatePolicy| negotiate(&[offer], policy)?.shared_server_side();
        let default = DeflatePolicy::default();
        assert!(shared("permessage-deflate; client_max_window_bits", &default).is_some());
        assert!(shared("permessage-deflate", &takeover()).is_none(), "context takeover: per connection");
        assert!(
            shared("permessage-deflate; server_max_window_bits=8", &default).is_none(),
            "never compresses"
        );
        let ten = shared("permessage-deflate; server_max_window_bits=10", &default);
        assert!(ten.is_some() && ten != shared("permessage-deflate", &default), "another window");
    }

    #[test]
    fn a_shared_compression_inflates_alone_and_is_skipped_when_it_would_not_gain() {
        let Some(params) = negotiate(&["permessage-deflate"], &DeflatePolicy::default())
            .and_then(|a| a.shared_server_side())
        else {
            panic!("the default agreement shares")
        };
        let text = "a room message, a room message, a room message, a room message".repeat(8);
        let compressed = params.compress(text.as_bytes()).unwrap_or_default();
        assert!(!compressed.is_empty() && compressed.len() < text.len() / 4, "{}", compressed.len());
        let agreement = negotiate(&["permessage-deflate"], &DeflatePolicy::default());
        let mut client = DeflateCodec::new(agreement.unwrap_or_else(|| panic!("agreed")), Role::Client);
        let mut out = Vec::new();
        assert_eq!(client.decompress(&compressed, true, &mut out, 1 << 20), Ok(()));
        assert_eq!(out, text.as_bytes());
        // Bytes with no repeats only grow; too short for the route's minimum: both plain.
        let noise: Vec<u8> = (0..64u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        assert_eq!(params.compress(&noise), None);
        let min = DeflatePolicy { min_message_bytes: 1024, ..DeflatePolicy::default() };
        let params = negotiate(&["permessage-deflate"], &min).and_then(|a| a.shared_server_side());
        assert_eq!(params.and_then(|p| p.compress(text.as_bytes())), None);
    }

    #[test]
    fn the_client_window_is_limited_only_when_the_client_offered_the_parameter() {
        let policy = DeflatePolicy { client_max_window_bits: 10, ..takeover() };
        let answer = |offer: &str| negotiate(&[offer], &policy).map(|a| (a.response, a.client_window_bits));
        assert_eq!(answer("permessage-deflate"), Some(("permessage-deflate".into(), 15)), "§7.1.2.2");
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits"),
            Some(("permessage-deflate; client_max_window_bits=10".into(), 10)),
            "Chromium's offer"
        );
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits=12"),
            Some(("permessage-deflate; client_max_window_bits=10".into(), 10))
        );
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits=9"),
            Some(("permessage-deflate; client_max_window_bits=9".into(), 9)),
            "the client's smaller value stands"
        );
        // The client compresses with the agreed window; we read it.
        let a = negotiate(&["permessage-deflate; client_max_window_bits"], &policy).expect("agreed");
        let mut server = DeflateCodec::new(a.clone(), Role::Server);
        let mut client = DeflateCodec::new(a, Role::Client);
        assert_eq!(client.own.window_bits, 10);
        let text: Vec<u8> = (0..20_000u32).map(|i| b"abcdefghij"[(i * i % 7) as usize]).collect();
        for _ in 0..3 {
            pass(&mut client, &mut server, &text);
        }
        assert!(server.decompressor.is_some(), "kept: context takeover");
    }

    #[test]
    fn without_context_takeover_an_idle_connection_owns_no_context() {
        let policy = DeflatePolicy::default();
        let a = negotiate(&["permessage-deflate; client_max_window_bits"], &policy).expect("agreed");
        let mut server = DeflateCodec::new(a.clone(), Role::Server);
        let mut client = DeflateCodec::new(a, Role::Client);
        for message in [&br#"{"type":"chat","text":"hello hello hello"}"#[..], b"", &[7u8; 100_000]] {
            pass(&mut server, &mut client, message);
            pass(&mut client, &mut server, message);
            assert!(server.compressor.is_none() && server.decompressor.is_none(), "released");
        }
        // A fragmented message keeps its context until its last fragment.
        let mut wire = server.compress(b"first half, ", false);
        assert!(server.compressor.is_some(), "held between fragments");
        wire.extend(server.compress(b"second half", true));
        assert!(server.compressor.is_none());
        let mut out = Vec::new();
        client.decompress(&wire, true, &mut out, 1 << 20).expect("inflates");
        assert_eq!(out, b"first half, second half");
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
        assert_eq!(negotiate(&["permessage-deflate"], &DeflatePolicy { enabled: false, ..takeover() }), None);
    }

    /// Compresses `message` with `from` and checks that `to` inflates it back.
    fn pass(from: &mut DeflateCodec, to: &mut DeflateCodec, message: &[u8]) {
        let compressed = from.compress(message, true);
        let mut out = Vec::new();
        to.decompress(&compressed, true, &mut out, 1 << 20).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(out, message);
    }

    #[test]
    fn round_trips_messages_with_and_without_context_takeover() {
        for offer in [
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ] {
            let agreement = agree(offer).unwrap_or_else(|| panic!("{offer}"));
            let mut server = DeflateCodec::new(agreement.clone(), Role::Server);
            let mut client = DeflateCodec::new(agreement, Role::Client);
            for message in [&b"hello hello hello hello"[..], b"", &[7u8; 100_000], b"hello hello again"] {
                pass(&mut server, &mut client, message);
                pass(&mut client, &mut server, message);
            }
        }
    }

    #[test]
    fn inflating_past_the_limit_fails() {
        let agreement = agree("permessage-deflate").unwrap_or_else(|| panic!("agree"));
        let mut server = DeflateCodec::new(agreement.clone(), Role::Server);
        let bomb = server.compress(&vec![0u8; 1 << 20], true);
        assert!(bomb.len() < 2000);
        let mut client = DeflateCodec::new(agreement.clone(), Role::Client);
        let mut out = Vec::new();
        assert_eq!(client.decompress(&bomb, true, &mut out, 1000), Err(InflateError::TooBig));
        let mut fresh = DeflateCodec::new(agreement, Role::Client);
        assert_eq!(
            fresh.decompress(b"\xff\xff\xff\xff", true, &mut Vec::new(), 1000),
            Err(InflateError::Corrupt)
        );
    }

    fn answer(value: &str) -> Result<Option<Agreement>, String> {
        parse_response(&[value])
    }

    #[test]
    fn the_client_reads_every_parameter_a_server_may_answer() {
        assert_eq!(parse_response(&[]), Ok(None), "not accepted");
        assert_eq!(answer(""), Ok(None), "an empty header accepts nothing");
        let plain = answer("permessage-deflate").ok().flatten();
        assert_eq!(
            plain.as_ref().map(|a| (
                a.server_window_bits,
                a.client_window_bits,
                a.level,
                a.min_message_bytes
            )),
            Some((15, 15, 6, 0))
        );
        let all = answer(
            "Permessage-Deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=\"9\"",
        )
        .ok()
        .flatten();
        assert_eq!(
            all.as_ref().map(|a| (
                a.server_no_context_takeover,
                a.client_no_context_takeover,
                a.server_window_bits,
                a.client_window_bits
            )),
            Some((true, true, 10, 9))
        );
        assert!(all.is_some_and(|a| a.response.starts_with("Permessage-Deflate; server_no")));
        // The answer may come as several header values and list elements.
        let split = parse_response(&["", "permessage-deflate; client_max_window_bits=12"]).ok().flatten();
        assert_eq!(split.map(|a| a.client_window_bits), Some(12));
    }

    #[test]
    fn the_client_refuses_what_it_did_not_offer_or_cannot_read() {
        let refusals = [
            ("x-webkit-deflate-frame", "`x-webkit-deflate-frame`, which was not offered"),
            ("permessage-deflate, permessage-deflate", "more than once"),
            ("permessage-deflate; foo", "unknown permessage-deflate parameter `foo`"),
            ("permessage-deflate; foo=1", "unknown permessage-deflate parameter `foo=1`"),
            ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", "duplicate"),
            ("permessage-deflate; client_max_window_bits=9; client_max_window_bits=9", "duplicate"),
            ("permessage-deflate; server_no_context_takeover=1", "takes no value"),
            ("permessage-deflate; client_max_window_bits", "without a value"),
            ("permessage-deflate; server_max_window_bits=16", "must be 8 to 15"),
            ("permessage-deflate; server_max_window_bits=7", "must be 8 to 15"),
            ("permessage-deflate; client_max_window_bits=010", "must be 8 to 15"),
            ("permessage-deflate; client_max_window_bits=x", "must be 8 to 15"),
        ];
        for (value, expected) in refusals {
            match answer(value) {
                Err(e) => assert!(e.contains(expected), "{value}: {e}"),
                Ok(a) => panic!("{value}: accepted as {a:?}"),
            }
        }
    }

    #[test]
    fn each_role_applies_its_own_side_of_the_agreement() {
        let agreement = answer("permessage-deflate; client_no_context_takeover; client_max_window_bits=8")
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("agreement"));
        let client = DeflateCodec::new(agreement.clone(), Role::Client);
        assert!(!client.wants_to_compress(1000), "zlib cannot write a window of 8 bits");
        assert!(client.own.compressor_resets && !client.own.decompressor_resets);
        let server = DeflateCodec::new(agreement, Role::Server);
        assert!(server.wants_to_compress(1000));
        assert!(!server.own.compressor_resets && server.own.decompressor_resets);
    }
}
