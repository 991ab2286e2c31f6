//! The reload decisions, free of I/O and of loaded libraries: what a pass does with each
//! handler file, given what the previous pass loaded and refused and what the directory
//! holds now. [`super::pass`] observes the directory, asks here, and carries the answers out
//! (reading, hashing, loading).
//!
//! Per handler file:
//! * the loaded file, unchanged (same size, mtime and inode) → kept, or re-instantiated when
//!   its `[[route]]` configuration changed;
//! * the file refused last time, unchanged → refused again without reading it;
//! * anything else (new, changed, or another file now claiming the resource) → read once it
//!   has been quiet for the debounce period; loaded unless its content and configuration are
//!   those of the loaded generation (a touched file reloads nothing).
//!
//! A resource claimed by several files keeps its loaded generation until the conflict is
//! resolved; a resource no pass result serves any more is removed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What identifies a file's version without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    /// Size in bytes.
    pub(crate) len: u64,
    /// Last modification, when the filesystem has it.
    pub(crate) modified: Option<SystemTime>,
    /// Inode: a file replaced by another (`cargo build`, `mv`) has a new one.
    pub(crate) inode: u64,
}

/// A resource's loaded generation, as the decisions see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known<'a> {
    /// The file it was loaded from.
    pub(crate) file: &'a Path,
    /// The file's stamp when it was read.
    pub(crate) stamp: FileStamp,
    /// The loaded content's hash.
    pub(crate) hash: u64,
    /// The configuration its default instance was made with.
    pub(crate) config: &'a toml::Table,
}

/// A file refused by an earlier pass, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// The file's stamp when it was refused.
    pub(crate) stamp: FileStamp,
    /// Why it was refused.
    pub(crate) reason: String,
}

/// A handler file in the directory now.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Its resource path.
    pub(crate) resource: String,
    /// The file.
    pub(crate) file: PathBuf,
    /// Its stamp (`None`: it vanished since the scan).
    pub(crate) stamp: Option<FileStamp>,
    /// The configuration its `[[route]]` gives its default instance (empty without one).
    pub(crate) wanted: toml::Table,
}

/// The handler directory now: the handler files, and the resources claimed by more than
/// one file (none of which is served).
#[derive(Debug, Clone, Default)]
pub(crate) struct DirState {
    /// Handler files, in resource order.
    pub(crate) handlers: Vec<Found>,
    /// Resources with conflicting files.
    pub(crate) conflicts: Vec<String>,
}

/// What to do with one handler file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// The loaded file, unchanged, with the same configuration: keep the loaded generation.
    Keep,
    /// The loaded file, unchanged, with a new configuration: a new instance of the loaded
    /// library.
    Reconfigure,
    /// The file refused last time, unchanged: refused again (for this reason) unread.
    StillRefused(String),
    /// New or changed: read it once it is quiet, then load it unless only touched.
    Read,
}

/// One handler file's step in a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// Its resource path.
    pub(crate) resource: String,
    /// The file.
    pub(crate) file: PathBuf,
    /// What to do.
    pub(crate) action: Action,
    /// A generation of this very file is loaded: it keeps serving if the new content is
    /// refused or still being written.
    pub(crate) keeps_old: bool,
}

/// The decisions of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// One step per handler file, in the order of [`DirState::handlers`].
    pub(crate) steps: Vec<Step>,
    /// Conflicted resources whose loaded generation keeps serving until the conflict is
    /// resolved.
    pub(crate) kept_in_conflict: Vec<String>,
}

/// Decides what a pass does with every file of `dir`, given the generations `known` from
/// the previous pass and the files it `refused`.
pub(crate) fn plan(
    known: &BTreeMap<String, Known<'_>>,
    dir: &DirState,
    refused: &HashMap<PathBuf, Refused>,
) -> Plan {
    let steps = dir
        .handlers
        .iter()
        .map(|found| {
            // A generation counts only if it came from this very file.
            let old = known.get(&found.resource).filter(|k| k.file == found.file);
            Step {
                resource: found.resource.clone(),
                file: found.file.clone(),
                action: action(old, found, refused.get(&found.file)),
                keeps_old: old.is_some(),
            }
        })
        .collect();
    let kept_in_conflict = dir.conflicts.iter().filter(|r| known.contains_key(*r)).cloned().collect();
    Plan { steps, kept_in_conflict }
}

/// Decides what to do with one file found now, given the generation loaded from it (if
/// any) and its earlier refusal (if any).
pub(crate) fn action(old: Option<&Known<'_>>, found: &Found, refused: Option<&Refused>) -> Action {
    if let Some(old) = old
        && Some(old.stamp) == found.stamp
    {
        return if *old.config == found.wanted { Action::Keep } else { Action::Reconfigure };
    }
    if let (Some(refused), Some(current)) = (refused, found.stamp)
        && refused.stamp == current
    {
        return Action::StillRefused(refused.reason.clone());
    }
    Action::Read
}

/// After reading a changed file whose resource has a loaded generation of it: whether the
/// file was only touched (same content, same instance configuration), so nothing is loaded.
pub(crate) fn only_touched(old: &Known<'_>, hash: u64, wanted: &toml::Table) -> bool {
    old.hash == hash && old.config == wanted
}

/// Whether a file was modified less than `quiet` before `now`: a slow writer pauses between
/// writes, so it may still be being copied; look again later. A modification time in the
/// future does not count as recent.
pub(crate) fn recently_written(stamp: &FileStamp, now: SystemTime, quiet: Duration) -> bool {
    stamp.modified.and_then(|m| now.duration_since(m).ok()).is_some_and(|age| age < quiet)
}

/// Whether a read saw the file at rest: the same stamp before and after it, and as many
/// bytes as the file says it holds.
pub(crate) fn read_was_stable(before: &FileStamp, after: &FileStamp, bytes_read: usize) -> bool {
    before == after && bytes_read as u64 == after.len
}

/// The resources served before a pass and not after it, in order: their routes disappear
/// for new connections (live ones continue).
pub(crate) fn removed<'a, B, A>(
    before: &'a BTreeMap<String, B>,
    after: &BTreeMap<String, A>,
) -> Vec<&'a str> {
    before.keys().filter(|r| !after.contains_key(*r)).map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(len: u64, inode: u64) -> FileStamp {
        FileStamp { len, modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + len)), inode }
    }

    fn found(resource: &str, file: &str, stamp: Option<FileStamp>) -> Found {
        Found { resource: resource.into(), file: file.into(), stamp, wanted: toml::Table::new() }
    }

    fn known<'a>(file: &'a str, stamp: FileStamp, config: &'a toml::Table) -> Known<'a> {
        Known { file: Path::new(file), stamp, hash: 7, config }
    }

    fn actions(plan: &Plan) -> Vec<(&str, Action, bool)> {
        plan.steps.iter().map(|s| (s.resource.as_str(), s.action.clone(), s.keeps_old)).collect()
    }

    #[test]
    fn a_directory_change_keeps_reads_refuses_and_removes() {
        let empty = toml::Table::new();
        let before: BTreeMap<String, Known<'_>> = [
            ("/same", known("h/libsame_wsh.so", stamp(10, 1), &empty)),
            ("/changed", known("h/libchanged_wsh.so", stamp(20, 2), &empty)),
            ("/gone", known("h/libgone_wsh.so", stamp(30, 3), &empty)),
            ("/replaced", known("h/libreplaced_wsh.so", stamp(40, 4), &empty)),
        ]
        .into_iter()
        .map(|(r, k)| (r.to_owned(), k))
        .collect();
        let refused: HashMap<PathBuf, Refused> = [
            ("h/libbroken_wsh.so", Refused { stamp: stamp(50, 5), reason: "truncated".into() }),
            ("h/libfixed_wsh.so", Refused { stamp: stamp(60, 6), reason: "bad ABI".into() }),
        ]
        .into_iter()
        .map(|(f, r)| (PathBuf::from(f), r))
        .collect();
        let dir = DirState {
            handlers: vec![
                found("/broken", "h/libbroken_wsh.so", Some(stamp(50, 5))),
                found("/changed", "h/libchanged_wsh.so", Some(stamp(21, 2))),
                found("/fixed", "h/libfixed_wsh.so", Some(stamp(60, 9))),
                found("/new", "h/libnew_wsh.so", Some(stamp(70, 7))),
                found("/replaced", "h/libreplaced_wsh.so", Some(stamp(40, 8))),
                found("/same", "h/libsame_wsh.so", Some(stamp(10, 1))),
            ],
            conflicts: Vec::new(),
        };
        let plan = plan(&before, &dir, &refused);
        assert_eq!(
            actions(&plan),
            [
                ("/broken", Action::StillRefused("truncated".into()), false),
                ("/changed", Action::Read, true),
                ("/fixed", Action::Read, false),
                ("/new", Action::Read, false),
                ("/replaced", Action::Read, true),
                ("/same", Action::Keep, true),
            ]
        );
        // What the pass serves afterwards: everything found (the broken file never loaded).
        let after: BTreeMap<String, ()> = ["/changed", "/fixed", "/new", "/replaced", "/same"]
            .into_iter()
            .map(|r| (r.to_owned(), ()))
            .collect();
        assert_eq!(removed(&before, &after), ["/gone"]);
    }

    #[test]
    fn a_new_route_configuration_makes_a_new_instance_of_an_unchanged_file() {
        let old_config = toml::Table::new();
        let old = known("h/libecho_wsh.so", stamp(10, 1), &old_config);
        let mut file = found("/echo", "h/libecho_wsh.so", Some(stamp(10, 1)));
        assert_eq!(action(Some(&old), &file, None), Action::Keep);
        file.wanted.insert("greeting".into(), "hi".into());
        assert_eq!(action(Some(&old), &file, None), Action::Reconfigure);
        file.stamp = Some(stamp(11, 1));
        assert_eq!(
            action(Some(&old), &file, None),
            Action::Read,
            "a changed file is read, whatever its config"
        );
    }

    #[test]
    fn a_refusal_lasts_until_the_file_changes_and_keeps_the_old_generation() {
        let empty = toml::Table::new();
        let before: BTreeMap<String, Known<'_>> =
            [("/ver".to_owned(), known("h/libver_wsh.so", stamp(10, 1), &empty))].into_iter().collect();
        let refused: HashMap<PathBuf, Refused> =
            [(PathBuf::from("h/libver_wsh.so"), Refused { stamp: stamp(5, 1), reason: "truncated".into() })]
                .into_iter()
                .collect();
        let unchanged = DirState {
            handlers: vec![found("/ver", "h/libver_wsh.so", Some(stamp(5, 1)))],
            ..Default::default()
        };
        assert_eq!(
            actions(&plan(&before, &unchanged, &refused)),
            [("/ver", Action::StillRefused("truncated".into()), true)]
        );
        let rewritten = DirState {
            handlers: vec![found("/ver", "h/libver_wsh.so", Some(stamp(6, 1)))],
            ..Default::default()
        };
        assert_eq!(actions(&plan(&before, &rewritten, &refused)), [("/ver", Action::Read, true)]);
        let vanished =
            DirState { handlers: vec![found("/ver", "h/libver_wsh.so", None)], ..Default::default() };
        assert_eq!(
            actions(&plan(&before, &vanished, &refused)),
            [("/ver", Action::Read, true)],
            "read reports it gone"
        );
    }

    #[test]
    fn a_conflict_keeps_only_a_loaded_generation() {
        let empty = toml::Table::new();
        let before: BTreeMap<String, Known<'_>> =
            [("/a".to_owned(), known("h/liba_wsh.so", stamp(1, 1), &empty))].into_iter().collect();
        let dir = DirState { handlers: Vec::new(), conflicts: vec!["/a".into(), "/b".into()] };
        let plan = plan(&before, &dir, &HashMap::new());
        assert!(plan.steps.is_empty());
        assert_eq!(plan.kept_in_conflict, ["/a"]);
    }

    #[test]
    fn only_the_same_content_and_configuration_is_a_touch() {
        let empty = toml::Table::new();
        let old = known("h/liba_wsh.so", stamp(1, 1), &empty);
        assert!(only_touched(&old, 7, &empty));
        assert!(!only_touched(&old, 8, &empty), "new content loads");
        let mut wanted = toml::Table::new();
        wanted.insert("k".into(), 1.into());
        assert!(!only_touched(&old, 7, &wanted), "same content, new configuration loads");
    }

    #[test]
    fn quiet_and_stable_reads() {
        let written = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let file = FileStamp { len: 3, modified: Some(written), inode: 1 };
        let quiet = Duration::from_millis(100);
        assert!(recently_written(&file, written + Duration::from_millis(99), quiet));
        assert!(!recently_written(&file, written + Duration::from_millis(100), quiet));
        assert!(!recently_written(&file, written - Duration::from_secs(1), quiet), "a future mtime");
        assert!(!recently_written(&file, written, Duration::ZERO), "at start-up nothing waits");
        assert!(read_was_stable(&file, &file, 3));
        assert!(!read_was_stable(&file, &file, 2), "short read: the file grew or shrank meanwhile");
        assert!(!read_was_stable(&file, &FileStamp { len: 4, ..file }, 4), "changed during the read");
    }
}
