//! Handler discovery: which files in the handler directory are plugins, and which resource
//! path each one serves (mod_pywebsocket's `<root>/a/b_wsh.py` → `/a/b`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Library file extensions, whatever the platform the host runs on.
const LIBRARY_EXTENSIONS: [&str; 3] = ["so", "dylib", "dll"];

/// The resource a library file name maps to, relative to the handler directory:
/// `chat/libroom_wsh.so` → `/chat/room`, `echo_wsh.dll` → `/echo`. `None` for files that are
/// not handlers (no `_wsh` suffix, not a library, hidden or temporary).
pub fn resource_for(relative: &Path) -> Option<String> {
    let name = relative.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    let (stem, extension) = name.rsplit_once('.')?;
    if !LIBRARY_EXTENSIONS.contains(&extension) {
        return None;
    }
    let stem =
        stem.strip_prefix("lib").filter(|s| s.len() > "_wsh".len() && s.ends_with("_wsh")).unwrap_or(stem);
    let base = stem.strip_suffix("_wsh").filter(|b| !b.is_empty())?;
    let mut resource = String::new();
    if let Some(parent) = relative.parent() {
        for part in parent.components() {
            let part = part.as_os_str().to_str()?;
            if part.starts_with('.') {
                return None;
            }
            resource.push('/');
            resource.push_str(part);
        }
    }
    resource.push('/');
    resource.push_str(base);
    Some(resource)
}

/// A problem found while scanning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanProblem {
    /// Two files map to one resource; neither is served.
    Conflict {
        /// The resource.
        resource: String,
        /// The files claiming it.
        files: Vec<PathBuf>,
    },
    /// A directory could not be read.
    Unreadable {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for ScanProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanProblem::Conflict { resource, files } => {
                let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                write!(f, "{} files map to {resource}, so none is served: {}", files.len(), files.join(", "))
            }
            ScanProblem::Unreadable { dir, reason } => write!(f, "cannot read {}: {reason}", dir.display()),
        }
    }
}

/// The outcome of a scan: resource → file, and problems to report.
#[derive(Debug, Default)]
pub struct Scan {
    /// Handler files by resource.
    pub handlers: BTreeMap<String, PathBuf>,
    /// Conflicts and unreadable directories.
    pub problems: Vec<ScanProblem>,
}

/// How to scan the handler directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions<'a> {
    /// Scan subdirectories too.
    pub recursive: bool,
    /// Scan only this subtree (pywebsocket `-s`); resources stay relative to the handler
    /// directory. It must be inside it (by real path), else nothing is found and a problem
    /// is reported.
    pub scan_dir: Option<&'a Path>,
    /// Also take handler files whose real path is outside the handler directory (symlinks
    /// pointing out of it). Off: they are skipped with a debug log.
    pub allow_outside: bool,
}

/// Scans `dir` (and its subdirectories when `recursive`) for handler files.
pub fn scan(dir: &Path, recursive: bool) -> Scan {
    scan_with(dir, &ScanOptions { recursive, scan_dir: None, allow_outside: true })
}

/// Where the walk starts: `dir`, or the scan directory expressed under `dir`.
fn start_dir(dir: &Path, real_root: Option<&Path>, scan_dir: Option<&Path>) -> Result<PathBuf, ScanProblem> {
    let Some(sub) = scan_dir else { return Ok(dir.to_path_buf()) };
    let unreadable = |reason: String| ScanProblem::Unreadable { dir: sub.to_path_buf(), reason };
    let real_sub = std::fs::canonicalize(sub).map_err(|e| unreadable(e.to_string()))?;
    let Some(root) = real_root else {
        return Err(unreadable(format!("the handler directory {} cannot be resolved", dir.display())));
    };
    match real_sub.strip_prefix(root) {
        Ok(relative) => Ok(dir.join(relative)),
        Err(_) => Err(unreadable(format!("not inside the handler directory {}", dir.display()))),
    }
}

/// Scans `dir` for handler files, as `options` say.
pub fn scan_with(dir: &Path, options: &ScanOptions<'_>) -> Scan {
    let recursive = options.recursive;
    let mut found: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut problems = Vec::new();
    let real_root = std::fs::canonicalize(dir).ok();
    let mut pending = match start_dir(dir, real_root.as_deref(), options.scan_dir) {
        Ok(start) => vec![start],
        Err(problem) => return Scan { handlers: BTreeMap::new(), problems: vec![problem] },
    };
    while let Some(current) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(e) => {
                problems.push(ScanProblem::Unreadable { dir: current, reason: e.to_string() });
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            // Follow symlinks to decide what a path is; a dangling link is skipped.
            let is_dir = kind.is_dir() || (kind.is_symlink() && path.is_dir());
            if is_dir {
                let hidden = entry.file_name().to_str().is_none_or(|n| n.starts_with('.'));
                if recursive && !hidden {
                    pending.push(path);
                }
                continue;
            }
            let Ok(relative) = path.strip_prefix(dir) else { continue };
            if let Some(resource) = resource_for(relative) {
                if !options.allow_outside
                    && let Some(root) = &real_root
                    && !std::fs::canonicalize(&path).is_ok_and(|real| real.starts_with(root))
                {
                    tracing::debug!(
                        file = %path.display(),
                        "handler skipped: its real path is outside the handler directory \
                         (--allow-handlers-outside-root-dir serves it)"
                    );
                    continue;
                }
                found.entry(resource).or_default().push(path);
            }
        }
    }
    let mut handlers = BTreeMap::new();
    for (resource, mut files) in found {
        if files.len() == 1 {
            handlers.insert(resource, files.remove(0));
        } else {
            files.sort();
            problems.push(ScanProblem::Conflict { resource, files });
        }
    }
    Scan { handlers, problems }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_like_mod_pywebsocket() {
        let cases = [
            ("libecho_wsh.so", Some("/echo")),
            ("echo_wsh.so", Some("/echo")),
            ("chat/libroom_wsh.so", Some("/chat/room")),
            ("libecho_wsh.dylib", Some("/echo")),
            ("echo_wsh.dll", Some("/echo")),
            ("libfoo_wsh.d", None),
            ("libfoo.so", None),
            ("lib_wsh.so", Some("/lib")),
            ("_wsh.so", None),
            (".libecho_wsh.so", None),
            ("libecho_wsh.so.tmp", None),
            (".git/libx_wsh.so", None),
            ("liblib_wsh.so", Some("/lib")),
        ];
        for (file, want) in cases {
            assert_eq!(resource_for(Path::new(file)).as_deref(), want, "{file}");
        }
    }
}
