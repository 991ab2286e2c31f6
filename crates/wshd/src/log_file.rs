//! A log file rotated by size, like pywebsocket's `--log-file` (`RotatingFileHandler`):
//! when the file would grow past `max_bytes`, `wshd.log` becomes `wshd.log.1`, `.1`
//! becomes `.2`, … and the oldest beyond `keep` is deleted.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A size-rotated log file, shareable between threads.
#[derive(Debug, Clone)]
pub struct RotatingFile {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl RotatingFile {
    /// Opens (appending to) `path`; rotation keeps `keep` old files of at most `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<RotatingFile> {
        let (file, size) = open_append(path)?;
        let inner = Inner { path: path.to_path_buf(), max_bytes: max_bytes.max(1), keep, file, size };
        Ok(RotatingFile { inner: Arc::new(Mutex::new(inner)) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            let (file, size) =
                (OpenOptions::new().create(true).write(true).truncate(true).open(&self.path)?, 0);
            self.file = file;
            self.size = size;
            return Ok(());
        }
        let _ = std::fs::remove_file(numbered(&self.path, self.keep));
        for n in (1..self.keep).rev() {
            let from = numbered(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))?;
        let (file, size) = open_append(&self.path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.lock();
        if inner.size > 0 && inner.size + buf.len() as u64 > inner.max_bytes {
            // A failed rotation must not lose the line: keep writing to the current file.
            if let Err(e) = inner.rotate() {
                let _ = writeln!(io::stderr(), "wshd: cannot rotate {}: {e}", inner.path.display());
            }
        }
        inner.file.write_all(buf)?;
        inner.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.lock().file.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_the_newest_files() {
        let dir = std::env::temp_dir().join(format!("wshd-logrotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("wshd.log");
        let mut log = RotatingFile::open(&path, 100, 2).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..10 {
            log.write_all(format!("line {i:02} {}\n", "x".repeat(40)).as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        assert!(read(&path).contains("line 09"));
        assert!(read(&numbered(&path, 1)).contains("line 07"));
        assert!(read(&numbered(&path, 2)).contains("line 05"));
        assert!(!numbered(&path, 3).exists(), "only two old files are kept");
        assert!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) <= 100);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
