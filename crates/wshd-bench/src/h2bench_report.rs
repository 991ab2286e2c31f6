//! The figures of `wshd-bench h2`, as a markdown table and as `target/bench/h2.json`.

use std::fmt::Write as _;

use crate::h2bench::H2Args;
use crate::run::{group, num};

/// Server memory per idle unit, from RSS deltas.
#[derive(Debug, Clone)]
pub(crate) struct Memory {
    /// Units of each kind opened.
    pub(crate) count: usize,
    /// Per WebSocket stream on one HTTP/2 connection.
    pub(crate) per_h2_stream_kib: f64,
    /// Per WebSocket on its own TLS connection (HTTP/1.1).
    pub(crate) per_h1_kib: f64,
    /// Per idle HTTP/2 connection over TLS (one request served).
    pub(crate) per_h2_connection_kib: f64,
}

/// One socket's sequential echoes: the rate and what one round trip costs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RoundTrips {
    /// Round trips per second.
    pub(crate) per_sec: f64,
    /// Server CPU time per round trip, µs.
    pub(crate) server_cpu_us: f64,
    /// This client's CPU time per round trip, µs.
    pub(crate) client_cpu_us: f64,
    /// Server context switches (all threads) per round trip.
    pub(crate) server_switches: f64,
}

/// Everything measured in one run: (parameter, h1, h2, …) rows.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    /// (client tasks, h1 handshakes/s, h2 handshakes/s).
    pub(crate) handshakes: Vec<(usize, f64, f64)>,
    /// (message bytes, h1, h2), one socket.
    pub(crate) round_trips: Vec<(usize, RoundTrips, RoundTrips)>,
    /// (message bytes, h1 echoes/s, h2 one-connection echoes/s, h2 spread echoes/s).
    pub(crate) parallel: Vec<(usize, f64, f64, f64)>,
    /// The memory figures.
    pub(crate) memory: Option<Memory>,
}

fn size(bytes: usize) -> String {
    if bytes >= 1024 { format!("{} KiB", bytes / 1024) } else { format!("{bytes} B") }
}

fn ratio(h2: f64, h1: f64) -> String {
    if h1 > 0.0 { format!("{:.2}", h2 / h1) } else { "n/a".into() }
}

/// The markdown table: one row a measurement, the ratio h2 / h1 last.
pub(crate) fn table(args: &H2Args, f: &Figures) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| over TLS, release wshd, one client thread | HTTP/1.1 upgrade | HTTP/2 stream | h2 / h1 |"
    );
    let _ = writeln!(t, "|---|---|---|---|");
    for &(tasks, h1, h2) in &f.handshakes {
        let _ = writeln!(
            t,
            "| WebSocket handshakes/s, {tasks} client task(s) (open, 1 echo, close; h1: a new TLS \
             connection each; h2: a new stream on one connection) | {} | {} | {} |",
            group(h1),
            group(h2),
            ratio(h2, h1)
        );
    }
    for &(bytes, h1, h2) in &f.round_trips {
        let _ = writeln!(
            t,
            "| echo round trips/s, one WebSocket, {} | {} | {} | {} |",
            size(bytes),
            group(h1.per_sec),
            group(h2.per_sec),
            ratio(h2.per_sec, h1.per_sec)
        );
        let costs = [
            ("server CPU µs", h1.server_cpu_us, h2.server_cpu_us),
            ("client CPU µs", h1.client_cpu_us, h2.client_cpu_us),
            ("server context switches", h1.server_switches, h2.server_switches),
        ];
        for (what, a, b) in costs {
            let _ = writeln!(t, "| … {what} per round trip | {a:.1} | {b:.1} | {} |", ratio(b, a));
        }
    }
    let (n, k) = (args.sockets, args.h2_connections);
    for &(bytes, h1, one, spread) in &f.parallel {
        let _ = writeln!(
            t,
            "| echoes/s, {n} WebSockets at once, {} (h1: {n} TLS connections; h2: {n} streams on one \
             connection) | {} | {} | {} |",
            size(bytes),
            group(h1),
            group(one),
            ratio(one, h1)
        );
        let _ = writeln!(
            t,
            "| the same, h2: {n} streams over {k} connections | {} | {} | {} |",
            group(h1),
            group(spread),
            ratio(spread, h1)
        );
    }
    if let Some(m) = &f.memory {
        let _ = writeln!(
            t,
            "| server RSS per idle WebSocket, KiB ({} of each, a fresh server each; h2: streams on one connection) | \
             {:.1} | {:.1} | {} |",
            m.count,
            m.per_h1_kib,
            m.per_h2_stream_kib,
            ratio(m.per_h2_stream_kib, m.per_h1_kib)
        );
        let _ = writeln!(
            t,
            "| server RSS per idle HTTP/2 connection over TLS (one request served, no stream), KiB \
             | | {:.1} | |",
            m.per_h2_connection_kib
        );
    }
    t
}

fn trips_json(r: RoundTrips) -> String {
    format!(
        "{{\"per_sec\": {}, \"server_cpu_us\": {}, \"client_cpu_us\": {}, \"server_switches\": {}}}",
        num(r.per_sec),
        num(r.server_cpu_us),
        num(r.client_cpu_us),
        num(r.server_switches)
    )
}

/// The figures as JSON.
pub(crate) fn json(args: &H2Args, f: &Figures) -> String {
    let rows = |v: Vec<String>| v.join(",\n    ");
    let handshakes = f
        .handshakes
        .iter()
        .map(|&(tasks, h1, h2)| format!("{{\"tasks\": {tasks}, \"h1\": {}, \"h2\": {}}}", num(h1), num(h2)))
        .collect();
    let trips = f
        .round_trips
        .iter()
        .map(|&(bytes, h1, h2)| {
            format!("{{\"bytes\": {bytes}, \"h1\": {}, \"h2\": {}}}", trips_json(h1), trips_json(h2))
        })
        .collect();
    let parallel = f
        .parallel
        .iter()
        .map(|&(bytes, h1, one, spread)| {
            format!(
                "{{\"bytes\": {bytes}, \"h1\": {}, \"h2_one_connection\": {}, \"h2_spread\": {}}}",
                num(h1),
                num(one),
                num(spread)
            )
        })
        .collect();
    let memory = f.memory.as_ref().map_or("null".to_owned(), |m| {
        format!(
            "{{\"count\": {}, \"per_h1_websocket_kib\": {}, \
             \"per_h2_stream_kib\": {}, \"per_h2_connection_kib\": {}}}",
            m.count,
            num(m.per_h1_kib),
            num(m.per_h2_stream_kib),
            num(m.per_h2_connection_kib)
        )
    });
    format!(
        "{{\n  \"bench\": \"h2\",\n  \"units\": \"per second; memory in KiB\",\n  \
         \"seconds\": {},\n  \"sockets\": {},\n  \"h2_connections\": {},\n  \
         \"handshakes_per_sec\": [\n    {}\n  ],\n  \"round_trips_per_sec\": [\n    {}\n  ],\n  \
         \"parallel_echoes_per_sec\": [\n    {}\n  ],\n  \"memory\": {memory}\n}}\n",
        num(args.seconds),
        args.sockets,
        args.h2_connections,
        rows(handshakes),
        rows(trips),
        rows(parallel)
    )
}
