//! The peers of `fanout` that live outside this crate: Node `ws` (installed with npm into the
//! bench directory) and Python `websockets` (installed with pip into a venv there), each set up
//! only when missing. A peer that cannot be set up is reported with the reason, never fatal.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::BoxError;
use crate::run::on_path;

/// Runs `cmd` with its output into `log`, at most `bound`; its exit success.
fn run_logged(mut cmd: Command, log: &Path, bound: Duration) -> Result<bool, BoxError> {
    let file = fs::File::create(log)?;
    let mut child = cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).spawn()?;
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.success());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn last_lines(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
}

/// Installs `ws@8` under the bench dir when missing; its version, or why not.
pub(crate) fn setup_node(bench_dir: &Path, temp: &Path) -> Result<String, String> {
    if !on_path("node") || !on_path("npm") {
        return Err("node or npm is not on PATH".into());
    }
    let package = bench_dir.join("node_modules/ws/package.json");
    if !package.is_file() {
        eprintln!("[fanout] installing ws@8 into {} (npm)", bench_dir.display());
        let mut cmd = Command::new("npm");
        cmd.args(["install", "--no-save", "--no-audit", "--no-fund", "--prefix"]).arg(bench_dir).arg("ws@8");
        let log = temp.join("npm.log");
        match run_logged(cmd, &log, Duration::from_secs(240)) {
            Ok(true) if package.is_file() => {}
            Ok(_) => return Err(format!("npm install ws@8 failed: {}", last_lines(&log))),
            Err(e) => return Err(format!("cannot run npm: {e}")),
        }
    }
    let text = fs::read_to_string(&package).map_err(|e| format!("{}: {e}", package.display()))?;
    let version = text.split("\"version\"").nth(1).and_then(|rest| rest.split('"').nth(1)).unwrap_or("?");
    Ok(version.to_owned())
}

/// Makes a venv with `websockets` under the bench dir when missing; its version, or why not.
pub(crate) fn setup_python(bench_dir: &Path, temp: &Path) -> Result<String, String> {
    let venv = bench_dir.join("venv");
    let python = venv.join("bin/python");
    let version = || {
        let out = Command::new(&python)
            .args(["-c", "import websockets, websockets.asyncio.server; print(websockets.__version__)"])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    if let Some(v) = version() {
        return Ok(v);
    }
    let log = temp.join("pip.log");
    if !python.is_file() {
        eprintln!("[fanout] creating a venv at {}", venv.display());
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv"]).arg(&venv);
        if !run_logged(cmd, &log, Duration::from_secs(120)).unwrap_or(false) {
            return Err(format!("python3 -m venv failed: {}", last_lines(&log)));
        }
    }
    eprintln!("[fanout] installing websockets into {} (pip)", venv.display());
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pip", "install", "--quiet", "websockets>=13"]);
    if !run_logged(cmd, &log, Duration::from_secs(240)).unwrap_or(false) {
        return Err(format!("pip install websockets failed: {}", last_lines(&log)));
    }
    version().ok_or_else(|| "websockets installed but not importable".into())
}

/// `node --version`.
pub(crate) fn node_version() -> String {
    Command::new("node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
