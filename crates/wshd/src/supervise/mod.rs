//! Supervised worker processes: the pieces the master and its workers share (merging the
//! workers' metrics, the master↔worker control channel).

// Wired by the supervisor: until then the non-test code has no caller.
#![allow(dead_code)]

pub(crate) mod control;
pub(crate) mod exposition;
