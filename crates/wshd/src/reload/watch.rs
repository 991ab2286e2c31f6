//! Watching the handler directory with `notify`. Event kinds are not trusted (`cargo build`
//! shows as remove + create, `cp` over a file as modify, `mv` as create): any event that
//! touches a possible handler file only says "look again", and the reload task rescans after
//! a debounce.

use std::path::{Path, PathBuf};

use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::plugin::scan;

/// A running watch; dropping it stops watching.
#[derive(Debug)]
pub(crate) struct DirWatch {
    _watcher: RecommendedWatcher,
}

/// A handler-directory watch and its event channel.
pub(crate) type Watching = (DirWatch, mpsc::UnboundedReceiver<()>);

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
pub(crate) fn watch(dir: &Path, recursive: bool) -> Result<Watching, notify::Error> {
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

/// Starts watching the configured handler directory (if watching is on). Call it before the
/// first scan, so no change between the scan and the watch is missed. Blocks (a recursive
/// watch walks the directory tree).
pub(crate) fn start(config: &Config) -> Option<Watching> {
    if !config.handlers_watch {
        return None;
    }
    match watch(&config.handlers_dir, config.handlers_recursive) {
        Ok(watching) => {
            tracing::info!("watching {} for handler changes", config.handlers_dir.display());
            Some(watching)
        }
        Err(e) => {
            tracing::error!(
                "cannot watch {}: {e}; handlers reload on SIGHUP only",
                config.handlers_dir.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_handler_files_and_directories_are_relevant() {
        let dir = Path::new("/srv/handlers");
        assert!(relevant(dir, Path::new("/srv/handlers/libecho_wsh.so"), false));
        assert!(relevant(dir, Path::new("/srv/handlers/chat/libroom_wsh.so"), true));
        assert!(!relevant(dir, Path::new("/srv/handlers/notes.txt"), true));
        assert!(!relevant(dir, Path::new("/elsewhere/libecho_wsh.so"), true));
        assert!(relevant(dir, Path::new("/srv/handlers/chat"), true), "a directory, when recursive");
        assert!(!relevant(dir, Path::new("/srv/handlers/chat"), false));
        assert!(!relevant(dir, Path::new("/srv/handlers"), true), "the root itself");
    }
}
