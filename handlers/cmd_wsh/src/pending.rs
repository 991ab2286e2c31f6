//! Children started in `do_handshake`, waiting for their connection's `transfer_data`. The
//! SDK hands nothing from one hook to the other, so the key is the TCP connection (peer and
//! local address: unique among a process's open connections). An entry whose connection never
//! reached `transfer_data` (its 101 could not be written) is swept after [`STALE`]: its child
//! is killed and reaped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::process::Started;

/// Far longer than a 101 response takes to write.
const STALE: Duration = Duration::from_secs(30);

/// The TCP connection a child belongs to.
pub(crate) type Key = (SocketAddr, SocketAddr);

/// The waiting children.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    children: Mutex<HashMap<Key, (Instant, Started)>>,
}

impl Pending {
    /// Parks `started` for `key`, after sweeping stale entries (dropped outside the lock:
    /// dropping one kills and reaps its child).
    pub(crate) fn park(&self, key: Key, started: Started) {
        let now = Instant::now();
        let swept: Vec<(Instant, Started)> = {
            let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
            let stale: Vec<Key> = children
                .iter()
                .filter(|(_, (at, _))| now.duration_since(*at) > STALE)
                .map(|(k, _)| *k)
                .collect();
            let mut swept: Vec<_> = stale.iter().filter_map(|k| children.remove(k)).collect();
            swept.extend(children.insert(key, (now, started)));
            swept
        };
        drop(swept);
    }

    /// Takes the child parked for `key`.
    pub(crate) fn take(&self, key: Key) -> Option<Started> {
        let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
        children.remove(&key).map(|(_, started)| started)
    }
}
