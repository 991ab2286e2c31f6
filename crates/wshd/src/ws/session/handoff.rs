//! The driver lends its lock to the handler it polls.
//!
//! Every operation of a handler (receive, send, flush, …) needs the connection state, which
//! sits behind a mutex because a [`Sender`](wshd_sdk::Sender) may be used from another task.
//! Most operations, though, happen while the session's driver polls the handler, holding that
//! lock already. Instead of unlocking around the poll and letting each operation lock again
//! (five or more lock round trips per echoed message, each two atomic read-modify-writes), the
//! driver keeps its guard and lends the state to the operations of its own session on its own
//! thread for the duration of the poll. Operations from anywhere else lock as usual and wait
//! for the poll to end (a poll is short: a handler must not block).
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::ptr;

use super::{ConnShared, ConnState};

thread_local! {
    /// The session being driven on this thread and its lent state (null while borrowed).
    static LENT: Cell<(*const ConnShared, *mut ConnState)> =
        const { Cell::new((ptr::null(), ptr::null_mut())) };
}

/// Runs `poll` with `state` (the driver's locked state of `shared`) lent to `shared`'s
/// operations on this thread. Nests (a handler polled inside another's poll lends its own).
pub(super) fn lend_while<R>(shared: &ConnShared, state: &mut ConnState, poll: impl FnOnce() -> R) -> R {
    struct Restore((*const ConnShared, *mut ConnState));
    impl Drop for Restore {
        fn drop(&mut self) {
            LENT.with(|slot| slot.set(self.0));
        }
    }
    let previous = LENT.with(|slot| slot.replace((shared, state)));
    let _restore = Restore(previous);
    poll()
}

/// Whether `shared`'s driver is polling its handler on this thread right now.
pub(super) fn is_being_driven(shared: &ConnShared) -> bool {
    LENT.with(|slot| ptr::eq(slot.get().0, shared))
}

/// The state lent to `shared`'s operations, if its driver is polling on this thread; it is
/// taken out of the slot until the returned borrow ends, so there is one borrow at a time.
pub(super) fn borrow_lent(shared: &ConnShared) -> Option<LentState<'_>> {
    let (owner, state) = LENT.with(Cell::get);
    if !ptr::eq(owner, shared) || state.is_null() {
        return None;
    }
    LENT.with(|slot| slot.set((owner, ptr::null_mut())));
    // SAFETY: `state` came from the `&mut ConnState` given to `lend_while`, which is still
    // running further up this thread's stack (the slot is reset when it returns or unwinds),
    // and whose caller does not use its guard until then. Nulling the slot makes this the only
    // reference derived from it until `LentState` is dropped and puts the pointer back.
    // `LentState` cannot outlive that call: it is only created and dropped within one
    // synchronous `ConnShared` operation.
    Some(LentState { owner, state: unsafe { &mut *state } })
}

/// A borrow of the lent state; gives it back when dropped.
pub(super) struct LentState<'a> {
    owner: *const ConnShared,
    state: &'a mut ConnState,
}

impl Deref for LentState<'_> {
    type Target = ConnState;
    fn deref(&self) -> &ConnState {
        self.state
    }
}

impl DerefMut for LentState<'_> {
    fn deref_mut(&mut self) -> &mut ConnState {
        self.state
    }
}

impl Drop for LentState<'_> {
    fn drop(&mut self) {
        let state: *mut ConnState = &mut *self.state;
        LENT.with(|slot| slot.set((self.owner, state)));
    }
}
