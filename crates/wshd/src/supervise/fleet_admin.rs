//! The admin endpoints as a master answers them: `/metrics` is the sum of every worker's
//! exposition (asked over the control channel at each scrape) plus the master's own
//! counters; `/healthz` and `/readyz` come from the supervisor's view of its workers.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::control::WorkerLink;
use super::exposition;
use super::fleet_metrics::FleetMetrics;
use crate::admin::AdminSource;

/// How long a scrape waits for a worker's figures (a worker whose every runtime thread is
/// stuck misses the scrape; the master counts that).
pub(crate) const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// A check of the whole fleet: `Err(why)` when it fails.
pub(crate) type Check = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the master's admin listener reports.
pub(crate) struct FleetAdmin {
    links: Mutex<Vec<Option<Arc<WorkerLink>>>>,
    metrics: Arc<FleetMetrics>,
    health: Check,
    ready: Check,
}

impl std::fmt::Debug for FleetAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetAdmin").finish_non_exhaustive()
    }
}

impl FleetAdmin {
    /// An admin view with no worker yet.
    pub(crate) fn new(metrics: Arc<FleetMetrics>, health: Check, ready: Check) -> FleetAdmin {
        FleetAdmin { links: Mutex::new(Vec::new()), metrics, health, ready }
    }

    /// Sets (or, with `None`, clears) the control link of worker `index`.
    pub(crate) fn set_link(&self, index: usize, link: Option<Arc<WorkerLink>>) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if links.len() <= index {
            links.resize(index + 1, None);
        }
        links[index] = link;
    }

    fn links(&self) -> Vec<Arc<WorkerLink>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner).iter().flatten().cloned().collect()
    }

    /// Every worker's exposition and the master's, merged.
    async fn scrape(self: Arc<Self>) -> String {
        let links = self.links();
        let mut asks = tokio::task::JoinSet::new();
        for link in links {
            asks.spawn(async move { link.metrics(SCRAPE_TIMEOUT).await });
        }
        let mut texts = Vec::new();
        let mut missed = 0;
        while let Some(answer) = asks.join_next().await {
            match answer {
                Ok(Some(text)) => texts.push(text),
                _ => missed += 1,
            }
        }
        if missed > 0 {
            self.metrics.scrape_missed(missed);
            tracing::warn!(
                missed,
                "/metrics: some workers did not answer in time; their figures are missing"
            );
        }
        let merged = exposition::merge(&self.metrics.encode(), &texts);
        if merged.stats.bad_lines > 0 {
            tracing::warn!(
                bad_lines = merged.stats.bad_lines,
                "/metrics: skipped unreadable lines from workers"
            );
        }
        merged.text
    }
}

impl AdminSource for FleetAdmin {
    fn health(&self) -> Result<(), String> {
        (self.health)()
    }

    fn readiness(&self) -> Result<(), String> {
        (self.ready)()
    }

    fn metrics(self: Arc<Self>) -> Pin<Box<dyn Future<Output = String> + Send>> {
        Box::pin(self.scrape())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::control::{WorkerEvent, serve_worker};

    fn worker(text: &'static str) -> (Arc<WorkerLink>, tokio::task::JoinHandle<()>) {
        let (master, worker) = tokio::net::UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
        let (_events_tx, events) = tokio::sync::mpsc::channel::<WorkerEvent>(1);
        let task = tokio::spawn(async move {
            let _ = serve_worker(worker, move || text.to_owned(), events).await;
            drop(_events_tx);
        });
        (Arc::new(WorkerLink::new(master).0), task)
    }

    #[tokio::test]
    async fn a_scrape_sums_the_workers_and_adds_the_masters_counters() {
        let fleet = Arc::new(FleetMetrics::default());
        fleet.set_running(2);
        let admin =
            Arc::new(FleetAdmin::new(Arc::clone(&fleet), Box::new(|| Ok(())), Box::new(|| Err("no".into()))));
        let (a, _ta) = worker("# TYPE x counter\nx_total 2\n# EOF\n");
        let (b, _tb) = worker("# TYPE x counter\nx_total 3\n# EOF\n");
        admin.set_link(0, Some(a));
        admin.set_link(3, Some(b));
        let text = Arc::clone(&admin).metrics().await;
        assert!(text.contains("x_total 5"), "{text}");
        assert!(text.contains("wshd_workers 2"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        admin.set_link(3, None);
        let text = Arc::clone(&admin).metrics().await;
        assert!(text.contains("x_total 2"), "{text}");
        assert_eq!(admin.readiness(), Err("no".to_owned()));
        assert_eq!(admin.health(), Ok(()));
    }
}
