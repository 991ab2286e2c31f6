//! The hot path: marking the calling thread as inside handler code. A thread gets its slot
//! on first use (the next free index; past [`MAX_THREADS`](super::slot::MAX_THREADS) it is not watched) and gives it
//! back when it exits. Nested calls (handler code that makes the host run more handler code)
//! mark the slot once, for the outermost call.

use std::cell::Cell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use super::slot::ThreadSlot;
use super::storage::storage;

/// What a thread knows about its slot.
#[derive(Debug, Clone, Copy)]
struct Local {
    /// Its slot, when it has one.
    slot: Option<&'static ThreadSlot>,
    /// Whether a slot was looked for already.
    assigned: bool,
    /// Calls into handler code in progress on this thread.
    depth: u32,
    /// The route of the outermost call in progress.
    route: u32,
}

thread_local! {
    /// This thread's slot and call depth (const-initialised: no lazy registration on the
    /// hot path).
    static LOCAL: Cell<Local> =
        const { Cell::new(Local { slot: None, assigned: false, depth: 0, route: 0 }) };
    /// Gives the slot index back when the thread exits (set up once, with the slot).
    static RELEASE: Release = const { Release(Cell::new(None)) };
}

/// Slot indices never handed out yet start here.
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Indices given back by threads that exited.
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// A thread's slot index, returned to [`FREE`] when the thread exits.
struct Release(Cell<Option<usize>>);

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(index) = self.0.get() {
            FREE.lock().unwrap_or_else(|p| p.into_inner()).push(index);
        }
    }
}

/// Finds this thread a slot (cold: once per thread).
#[cold]
fn assign() -> Option<&'static ThreadSlot> {
    let reused = FREE.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let index = reused.unwrap_or_else(|| NEXT.fetch_add(1, Ordering::Relaxed));
    let slot = storage().slots.get(index)?;
    // During thread teardown the release record may be gone; the slot then stays taken.
    let _ = RELEASE.try_with(|r| r.0.set(Some(index)));
    Some(slot)
}

/// Marks the calling thread as inside handler code of `route` until the guard drops.
#[inline]
pub(crate) fn enter(route: u32) -> Inside {
    // `try_with`: during thread teardown there is nothing to mark.
    let _ = LOCAL.try_with(|cell| {
        let mut local = cell.get();
        if !local.assigned {
            local.slot = assign();
            local.assigned = true;
        }
        if local.depth == 0 {
            if let Some(slot) = local.slot {
                slot.enter(route);
            }
            local.route = route;
        }
        local.depth += 1;
        cell.set(local);
    });
    Inside(())
}

/// The route of the handler code the calling thread is inside, if any: what a host service
/// called from handler code (such as spawning a task) is done on behalf of.
pub(crate) fn current_route() -> Option<u32> {
    LOCAL.try_with(|cell| cell.get()).ok().filter(|l| l.depth > 0).map(|l| l.route)
}

/// Proof that the thread is inside handler code; leaving on drop.
#[derive(Debug)]
#[must_use = "the thread counts as inside handler code only while this guard lives"]
pub(crate) struct Inside(());

impl Drop for Inside {
    #[inline]
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|cell| {
            let mut local = cell.get();
            local.depth = local.depth.saturating_sub(1);
            if local.depth == 0
                && let Some(slot) = local.slot
            {
                slot.leave();
            }
            cell.set(local);
        });
    }
}

/// A future whose polls and drop run handler code of `route`: each is bracketed by
/// [`enter`].
#[derive(Debug)]
pub(crate) struct Watched<F> {
    route: u32,
    future: ManuallyDrop<F>,
}

impl<F> Watched<F> {
    /// Watches `future`, which runs handler code of `route`.
    pub(crate) fn new(route: u32, future: F) -> Watched<F> {
        Watched { route, future: ManuallyDrop::new(future) }
    }
}

impl<F: Future + Unpin> Future for Watched<F> {
    type Output = F::Output;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _inside = enter(self.route);
        Pin::new(&mut *self.future).poll(cx)
    }
}

impl<F> Drop for Watched<F> {
    fn drop(&mut self) {
        let _inside = enter(self.route);
        // SAFETY: dropped exactly once, here; `future` is not used after this.
        #[allow(unsafe_code)]
        unsafe {
            ManuallyDrop::drop(&mut self.future)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_calls_mark_the_slot_once_and_name_the_outer_route() {
        std::thread::spawn(|| {
            assert_eq!(current_route(), None);
            let outer = enter(3);
            let slot = LOCAL.with(|c| c.get().slot).unwrap_or_else(|| panic!("no slot"));
            assert_eq!(slot.busy_route(), Some(3));
            let inner = enter(4);
            assert_eq!((slot.busy_route(), current_route()), (Some(3), Some(3)));
            drop(inner);
            assert_eq!(slot.busy_route(), Some(3));
            drop(outer);
            assert_eq!((slot.busy_route(), current_route()), (None, None));
        })
        .join()
        .unwrap_or_else(|_| panic!("the test thread panicked"));
    }

    #[test]
    fn a_watched_future_is_inside_while_polled() {
        std::thread::spawn(|| {
            let mut seen = None;
            let future = Watched::new(
                9,
                std::future::poll_fn(|_| {
                    seen = current_route();
                    Poll::Ready(())
                }),
            );
            futures_executor_free_poll(future);
            assert_eq!(seen, Some(9));
            assert_eq!(current_route(), None);
        })
        .join()
        .unwrap_or_else(|_| panic!("the test thread panicked"));
    }

    /// The hot path's cost, measured: `cargo test --release -p wshd --lib -- --ignored
    /// --nocapture enter_and_leave_cost`.
    #[test]
    #[ignore = "a measurement, not a check; run it in a release build"]
    fn enter_and_leave_cost() {
        const CALLS: u32 = 20_000_000;
        drop(enter(0)); // the slot is assigned on first use
        let started = std::time::Instant::now();
        for i in 0..CALLS {
            drop(std::hint::black_box(enter(std::hint::black_box(i))));
        }
        let ns = started.elapsed().as_nanos() as f64 / f64::from(CALLS);
        let started = std::time::Instant::now();
        for i in 0..CALLS {
            std::hint::black_box(i);
        }
        let empty = started.elapsed().as_nanos() as f64 / f64::from(CALLS);
        eprintln!("enter + leave: {ns:.2} ns per call into handler code (the empty loop: {empty:.2} ns)");
    }

    /// Polls a ready-at-once future with a no-op waker.
    fn futures_executor_free_poll<F: Future + Unpin>(mut future: F) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut future).poll(&mut cx).is_ready());
    }
}
