//! [`ConnId`]: a connection's id, unique across processes and machines without
//! coordination: a random 64-bit node id drawn once per process, and a per-process counter.
//!
//! Why this shape: worker processes (and, with the scale-out issue, machines) hand out ids at
//! the same time and a broker routes `send_to` by them, so they must not collide across
//! processes; a pid repeats across machines and restarts, a timestamp needs a clock that
//! never steps back. 64 random bits make a collision between two processes' node ids
//! unlikely until about 2^32 processes have lived; the counter makes ids within a process
//! unique and cheap (one atomic add), and never reused during the process's life.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A connection's id: stable for the connection's life, unique across processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnId {
    /// The process's random node id.
    pub(crate) node: u64,
    /// The process's counter when the id was made (from 1).
    pub(crate) seq: u64,
}

/// The counter behind [`ConnId::next`].
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// This process's node id: random, drawn on first use.
pub(crate) fn node_id() -> u64 {
    static NODE: OnceLock<u64> = OnceLock::new();
    *NODE.get_or_init(|| {
        let mut bytes = [0u8; 8];
        if let Err(e) = getrandom::fill(&mut bytes) {
            // Without the OS's randomness, the time and pid still differ between processes.
            tracing::warn!("no random bytes for the node id ({e}); using the time and pid");
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            return nanos ^ (u64::from(std::process::id()) << 32);
        }
        u64::from_le_bytes(bytes)
    })
}

impl ConnId {
    /// A new id, never handed out before by this process.
    pub(crate) fn next() -> ConnId {
        ConnId { node: node_id(), seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed) }
    }
}

/// `<node as 16 hex digits>-<seq in hex>`, e.g. `9f3a0c1d2e4b5a69-1f`.
impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{:x}", self.node, self.seq)
    }
}

/// The text is not a connection id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadConnId;

impl FromStr for ConnId {
    type Err = BadConnId;

    fn from_str(s: &str) -> Result<ConnId, BadConnId> {
        let (node, seq) = s.split_once('-').ok_or(BadConnId)?;
        if node.len() != 16 || seq.is_empty() || seq.len() > 16 {
            return Err(BadConnId);
        }
        let node = u64::from_str_radix(node, 16).map_err(|_| BadConnId)?;
        let seq = u64::from_str_radix(seq, 16).map_err(|_| BadConnId)?;
        Ok(ConnId { node, seq })
    }
}
