//! The watchdog: notices handler code that holds a runtime thread too long, names it, and
//! keeps the rest of the worker serving meanwhile.
//!
//! - [`inside`]: the hot path. Every call from the host into plugin code runs under
//!   [`enter`] (or inside a [`Watched`] future), which marks the calling thread's
//!   [`slot::ThreadSlot`] with the call's route id.
//! - [`storage`]: where the slots and route names live (this process's cell of the
//!   [`crate::scoreboard`]), and [`intern`], which names a route once, at load time.
//! - [`busy`]: pure reading of the slots: which call is busy since when, and
//!   [`busy::unhealthy`] for `/healthz` (and a master).
//! - [`episode`]: pure tick-to-tick decisions: blocked, still blocked, unblocked.
//! - [`thread`]: the watchdog thread ([`start`]): logs, metrics, and the nudge that keeps
//!   the runtime's I/O driver polled while a worker is blocked.
//!
//! Why and what it costs: `docs/decisions/0011-blocked-handlers.md`.

pub(crate) mod busy;
pub(crate) mod episode;
pub(crate) mod inside;
pub(crate) use crate::scoreboard::slot;
pub(crate) mod storage;
pub(crate) mod thread;

pub(crate) use inside::{Watched, current_route, enter};
pub(crate) use storage::intern;
pub(crate) use thread::{health_report, start};
