//! The watchdog: notices handler code that holds a runtime thread too long, names it, and
//! keeps the rest of the worker serving meanwhile.

#![allow(dead_code)] // wired by the watchdog and the supervisor

pub(crate) mod slot;
