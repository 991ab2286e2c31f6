//! Watching the handler directory with `notify`. Event kinds are not trusted (`cargo build`
//! shows as remove + create, `cp` over a file as modify, `mv` as create): any event that
//! touches a possible handler file only says "look again", and the reload task rescans after
//! a debounce.

use std::path::{Path, PathBuf};

use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::scan;

/// A running watch; dropping it stops watching.
#[derive(Debug)]
pub struct DirWatch {
    _watcher: RecommendedWatcher,
}

/// Whether an event path may matter: a handler file, or (when recursive) a directory.
fn relevant(dir: &Path, path: &Path, recursive: bool) -> bool {
    let Ok(relative) = path.strip_prefix(dir) else { return false };
    if scan::resource_for(relative).is_some() {
        return true;
    }
    // A directory appearing or disappearing (its contents were not reported one by one).
    recursive && path.extension().is_none() && !relative.as_os_str().is_empty()
}

/// Starts watching `dir`; every relevant event sends `()` on the returned channel.
pub fn watch(dir: &Path, recursive: bool) -> Result<(DirWatch, mpsc::UnboundedReceiver<()>), notify::Error> {
    let (tx, rx) = mpsc::unbounded_channel();
    let root: PathBuf = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let watched = root.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| match event {
        Ok(event) => {
            if event.paths.iter().any(|p| relevant(&watched, p, recursive)) {
                let _ = tx.send(());
            }
        }
        Err(e) => tracing::warn!("watching the handler directory: {e}"),
    })?;
    let mode = if recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
    watcher.watch(&root, mode)?;
    Ok((DirWatch { _watcher: watcher }, rx))
}
