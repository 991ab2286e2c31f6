//! `cmd_wsh`: a websocketd-style command bridge. Each connection runs its own child process
//! (the route's `program` and `args`, never through a shell): each text message becomes a
//! line on its stdin, each line on its stdout a text message, its stderr lines go to the
//! server log with the connection id, and its exit closes the connection (1000 for status 0,
//! 1011 otherwise). The connection's end kills and reaps it. See
//! `docs/decisions/0016-command-bridge.md` and the README ("A websocketd-style command
//! bridge").
//!
//! ```toml
//! [[route]]
//! path = "/rev"
//! handler = "/cmd"
//! [route.config]
//! program = "target/debug/rev_lines"   # a path (relative: to wshd's working directory) or a name in PATH
//! args = []
//! env = ["LANG"]                       # server variables passed on besides PATH
//! max_children = 64                    # per worker process; past it the handshake answers 503
//! ```

mod bridge;
mod env;
mod outbox;
mod pending;
mod process;
mod session;
mod settings;
mod sys;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use wshd_sdk::{Accept, CloseCode, Config, Connection, Error, Handler, Reject, Request};

use crate::pending::Pending;
use crate::settings::Settings;

/// The bridge: one instance per route (and per worker process and plugin generation).
struct Cmd {
    settings: Settings,
    /// Children alive (started and not yet reaped).
    live: Arc<AtomicUsize>,
    pending: Pending,
}

impl Handler for Cmd {
    fn new(config: &Config) -> Result<Self, Error> {
        let settings = Settings::from_config(config)?;
        Ok(Cmd { settings, live: Arc::new(AtomicUsize::new(0)), pending: Pending::default() })
    }

    fn do_handshake(&self, request: &Request<'_>) -> Result<Accept, Reject> {
        let Some(program) = self.settings.program.as_deref() else {
            return Err(Reject::status(404).body("no program is configured for this route\n"));
        };
        let (Some(peer), Some(local)) = (request.socket_addr(), request.local_addr()) else {
            wshd_sdk::error!("{}: a connection without TCP addresses cannot be bridged", request.path());
            return Err(Reject::status(500));
        };
        // Reserve a slot first, so concurrent handshakes cannot overshoot the cap.
        if self.live.fetch_add(1, Ordering::AcqRel) >= self.settings.max_children {
            self.live.fetch_sub(1, Ordering::AcqRel);
            wshd_sdk::warn!(
                "{}: {} children running (max_children); refused with 503",
                request.path(),
                self.settings.max_children
            );
            return Err(Reject::status(503).body("too many processes\n"));
        }
        let env = env::environment(request, &self.settings.pass_env);
        let spawning = Instant::now();
        match process::start(program, &self.settings.args, env, &self.live) {
            Ok(started) => {
                let took = spawning.elapsed().as_micros();
                wshd_sdk::debug!(
                    "{}: started {program} pid={} in {took} µs",
                    request.path(),
                    started.reaper.pid()
                );
                self.pending.park((peer, local), started);
                Ok(Accept::new())
            }
            Err(e) => {
                wshd_sdk::error!("{}: cannot start program {program}: {e}", request.path());
                Err(Reject::status(502).body("cannot start the program\n"))
            }
        }
    }

    async fn transfer_data(&self, mut conn: Connection) {
        let info = conn.info();
        let key = info.socket_addr().zip(info.local_addr());
        match key.and_then(|key| self.pending.take(key)) {
            Some(started) => bridge::serve(conn, started, self.settings.max_line_bytes).await,
            None => {
                wshd_sdk::error!("{}: no child process for this connection", info.path());
                let _ = conn.close(CloseCode::INTERNAL_ERROR, "no process").await;
            }
        }
    }
}

wshd_sdk::export_handler!(Cmd);
