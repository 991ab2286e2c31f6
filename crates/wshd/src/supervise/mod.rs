//! Supervised worker processes: the master, the workers, and what they share (the
//! master↔worker control channel, merging the workers' metrics, crash bookkeeping,
//! recycling).

// Wired by the supervisor: until then the non-test code has no caller.
#![allow(dead_code)]

pub(crate) mod control;
pub(crate) mod crashes;
pub(crate) mod exposition;
pub(crate) mod fleet_admin;
pub(crate) mod fleet_metrics;
pub(crate) mod recycle;
