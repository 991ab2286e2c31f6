//! The bounded blocking pool behind `wshd_sdk::blocking`: a semaphore of
//! `[server] blocking_threads` permits in front of tokio's `spawn_blocking`. A job waits for
//! a permit (queued, never refused), then runs on a blocking thread, off the async threads
//! and outside the watchdog's "handler code" mark: a slow job is not a stuck worker.

use std::sync::{Arc, OnceLock};

use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::config::DEFAULT_BLOCKING_THREADS;

/// The pool's permits, sized by the first [`configure`] (or the default on first use).
static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();

/// Sizes the pool to `threads` jobs at once. Only the first call in a process counts (a
/// worker process configures it once, at start).
pub(crate) fn configure(threads: usize) {
    let _ = PERMITS.set(Arc::new(Semaphore::new(threads.max(1))));
}

fn permits() -> &'static Arc<Semaphore> {
    PERMITS.get_or_init(|| Arc::new(Semaphore::new(DEFAULT_BLOCKING_THREADS)))
}

/// Runs `job` on the pool once a permit is free; `keep` (the plugin's keep-alive) is dropped
/// only after `job` has returned, or after `job` was dropped unrun (when the runtime shuts
/// down first). Without a runtime on this thread, gives both back.
pub(crate) fn submit<J, K>(job: J, keep: K) -> Result<(), (J, K)>
where
    J: FnOnce() + Send + 'static,
    K: Send + 'static,
{
    let Ok(handle) = Handle::try_current() else {
        return Err((job, keep));
    };
    let permits = Arc::clone(permits());
    // One tuple, so that `job` is dropped before `keep` whichever way it ends.
    let work = (job, keep);
    handle.spawn(async move {
        // The semaphore is never closed: `acquire_owned` cannot fail.
        let Ok(permit) = permits.acquire_owned().await else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            let (job, keep) = work;
            job();
            drop(permit);
            drop(keep);
        })
        .await;
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_run_off_the_runtime_and_release_their_keep_alive_after() {
        let ran = Arc::new(AtomicUsize::new(0));
        let keep = Arc::new(());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let counter = Arc::clone(&ran);
        let weak = Arc::downgrade(&keep);
        let job = move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(weak.upgrade().is_some());
        };
        assert!(submit(job, keep).is_ok());
        assert_eq!(rx.await.ok(), Some(true), "the keep-alive lives while the job runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn without_a_runtime_the_job_comes_back() {
        assert!(submit(|| (), ()).is_err());
    }
}
