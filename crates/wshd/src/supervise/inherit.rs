//! The master → worker start-up protocol: which file descriptors a worker inherits, named in
//! environment variables. A worker is the same binary with the same arguments and working
//! directory; `WSHD_WORKER` set is what makes it a worker.
//!
//! | variable | value |
//! |---|---|
//! | `WSHD_WORKER` | the worker's index, 1-based (`worker 1`) |
//! | `WSHD_MASTER_PID` | the master's pid (the worker exits when its parent is another) |
//! | `WSHD_LISTEN_FDS` | the listener fds, comma-separated, in `[server] listen` order |
//! | `WSHD_BOARD_FD` | the scoreboard's memfd |
//! | `WSHD_BOARD_CELL` | the worker's cell in it, 0-based (default: `WSHD_WORKER` − 1); a recycled worker's replacement takes another cell while the old one drains |
//! | `WSHD_CONTROL_FD` | the worker's end of its control socket (`control.rs`) |

use std::os::fd::RawFd;

/// The worker's index (1-based).
pub(crate) const WORKER: &str = "WSHD_WORKER";
/// The master's pid.
pub(crate) const MASTER_PID: &str = "WSHD_MASTER_PID";
/// The listener fds.
pub(crate) const LISTEN_FDS: &str = "WSHD_LISTEN_FDS";
/// The scoreboard fd.
pub(crate) const BOARD_FD: &str = "WSHD_BOARD_FD";
/// The worker's scoreboard cell.
pub(crate) const BOARD_CELL: &str = "WSHD_BOARD_CELL";
/// The control socket fd (read by [`super::control::from_env`]).
pub(crate) const CONTROL_FD: &str = super::control::FD_ENV;

/// What a worker inherits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inherited {
    /// 1-based index.
    pub index: usize,
    /// The master's pid.
    pub master_pid: u32,
    /// Listener fds.
    pub listeners: Vec<RawFd>,
    /// Scoreboard fd.
    pub board: RawFd,
    /// The worker's cell on the scoreboard (0-based; its index in the connection counts).
    pub cell: usize,
    /// Control socket fd.
    pub control: Option<RawFd>,
}

impl Inherited {
    /// The environment variables describing this inheritance.
    pub(crate) fn to_env(&self) -> Vec<(&'static str, String)> {
        let fds: Vec<String> = self.listeners.iter().map(ToString::to_string).collect();
        let mut env = vec![
            (WORKER, self.index.to_string()),
            (MASTER_PID, self.master_pid.to_string()),
            (LISTEN_FDS, fds.join(",")),
            (BOARD_FD, self.board.to_string()),
            (BOARD_CELL, self.cell.to_string()),
        ];
        if let Some(control) = self.control {
            env.push((CONTROL_FD, control.to_string()));
        }
        env
    }

    /// Every fd the worker keeps open across exec.
    pub(crate) fn fds(&self) -> Vec<RawFd> {
        let mut fds = self.listeners.clone();
        fds.push(self.board);
        fds.extend(self.control);
        fds
    }

    /// Reads the environment of this process: `None` when it is not a worker, `Err` when
    /// it is one but the variables are malformed.
    pub fn from_env() -> Option<Result<Inherited, String>> {
        let index = std::env::var(WORKER).ok()?;
        Some(Inherited::parse(&index, |name| std::env::var(name).ok()))
    }

    /// Parses the variables, `get` reading each.
    fn parse(index: &str, get: impl Fn(&str) -> Option<String>) -> Result<Inherited, String> {
        let number = |name: &str, text: &str| -> Result<i64, String> {
            text.trim().parse::<i64>().map_err(|_| format!("{name}={text} is not a number"))
        };
        let fd = |name: &str, text: &str| -> Result<RawFd, String> {
            RawFd::try_from(number(name, text)?)
                .map_err(|_| format!("{name}={text} is not a file descriptor"))
        };
        let required = |name: &str| get(name).ok_or_else(|| format!("{name} is not set"));
        let index = usize::try_from(number(WORKER, index)?).map_err(|_| format!("{WORKER}={index}"))?;
        let master_text = required(MASTER_PID)?;
        let master_pid = u32::try_from(number(MASTER_PID, &master_text)?)
            .map_err(|_| format!("{MASTER_PID}={master_text}"))?;
        let listen_text = required(LISTEN_FDS)?;
        let listeners = listen_text
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| fd(LISTEN_FDS, s))
            .collect::<Result<Vec<_>, _>>()?;
        if listeners.is_empty() || index == 0 {
            return Err(format!("{LISTEN_FDS}={listen_text} names no listener, or {WORKER} is 0"));
        }
        let board = fd(BOARD_FD, &required(BOARD_FD)?)?;
        let control = get(CONTROL_FD).map(|text| fd(CONTROL_FD, &text)).transpose()?;
        let cell = match get(BOARD_CELL) {
            None => index - 1,
            Some(text) => {
                usize::try_from(number(BOARD_CELL, &text)?).map_err(|_| format!("{BOARD_CELL}={text}"))?
            }
        };
        Ok(Inherited { index, master_pid, listeners, board, cell, control })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_round_trips() {
        let inherited = Inherited {
            index: 2,
            master_pid: 77,
            listeners: vec![3, 4],
            board: 6,
            cell: 4,
            control: Some(5),
        };
        let env = inherited.to_env();
        let get = |name: &str| env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        assert_eq!(Inherited::parse("2", get), Ok(inherited.clone()));
        assert_eq!(inherited.fds(), vec![3, 4, 6, 5]);
        let broken = |name: &str| if name == BOARD_FD { Some("x".to_owned()) } else { get(name) };
        assert!(Inherited::parse("2", broken).is_err_and(|e| e.contains(BOARD_FD)));
    }
}
