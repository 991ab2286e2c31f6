//! Supervised worker processes: the master, the workers, and what they share.
#![allow(dead_code)] // wired by the supervisor

pub(crate) mod crashes;
pub(crate) mod recycle;
