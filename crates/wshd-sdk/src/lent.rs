//! Buffers the host lends a plugin (received messages, pongs, close reasons), released
//! through the host's own drop function when the plugin is done with them. With `export`
//! and `abi`, the only `unsafe` in the SDK.
#![allow(unsafe_code)]

use crate::abi::ROwnedBuf;

/// A host buffer, valid until dropped.
pub(crate) struct LentBuf(ROwnedBuf);

// SAFETY: the host's buffers are plain heap memory owned by this value until it is released,
// and the host's release function may run on any thread (ABI rules).
unsafe impl Send for LentBuf {}
// SAFETY: the bytes are never written while lent.
unsafe impl Sync for LentBuf {}

impl LentBuf {
    /// Takes over a buffer the host lent.
    ///
    /// # Safety
    /// `buf` came from a host call (`poll_recv`, `poll_closed`) and is owned by no one else.
    pub(crate) unsafe fn from_host(buf: ROwnedBuf) -> LentBuf {
        LentBuf(buf)
    }

    /// The bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        // SAFETY: the host keeps the buffer valid until released, and it is released only in
        // `Drop`.
        unsafe { self.0.bytes() }
    }
}

impl Drop for LentBuf {
    fn drop(&mut self) {
        // SAFETY: released exactly once, through the host's own function.
        unsafe { self.0.release() }
    }
}

/// A host buffer holding valid UTF-8.
pub(crate) struct LentText(LentBuf);

impl LentText {
    /// Takes over the buffer of a text message.
    ///
    /// # Safety
    /// As for [`LentBuf::from_host`], and `buf` holds a `MSG_TEXT` message, which the ABI
    /// guarantees is valid UTF-8 (the host validated it, failing the connection with 1007
    /// otherwise), so it is not checked a second time here.
    pub(crate) unsafe fn from_host(buf: ROwnedBuf) -> LentText {
        // SAFETY: forwarded contract.
        LentText(unsafe { LentBuf::from_host(buf) })
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        // SAFETY: valid UTF-8 by the contract of `from_host`, and the bytes never change.
        unsafe { std::str::from_utf8_unchecked(self.0.as_bytes()) }
    }
}
