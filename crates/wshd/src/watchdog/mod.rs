//! The watchdog: notices handler code that holds a runtime thread too long, names it, and
//! keeps the rest of the worker serving meanwhile.
