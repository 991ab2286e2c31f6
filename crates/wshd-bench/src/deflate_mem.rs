//! `deflate-memory`: what permessage-deflate costs per connection and in throughput.
//!
//! Starts wshd (built-in echo, one serving process) once per configuration, back to back in
//! one run: `plain` (the client does not offer deflate: the floor), `takeover` (the settings
//! before issue 16: context takeover both ways, each connection keeps its compressor and its
//! decompressor), `takeover-w9` (the same with `server_max_window_bits = 9`),
//! `server-reset` (only the server resets: the decompressor is kept), `server-reset-c10` (the
//! same, answering `client_max_window_bits=10` to the client's offer) and `default` (the
//! shipped `[websocket.deflate]`: both directions reset, contexts borrowed per message). For
//! each it opens `--connections` connections, sends one JSON-like message each way on each,
//! and reads the server's RSS (`/proc/PID/status`) before opening, after the handshakes and
//! after the exchange; then it measures echo throughput over `--streams` connections
//! (pipelined, the client compressing and inflating too) and the compression ratio of the
//! same messages.
//!
//! ```text
//! cargo build --release -p wshd -p wshd-bench
//! target/release/wshd-bench deflate-memory
//! ```

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, FlushCompress};
use tokio::time::timeout;

use crate::BoxError;
use crate::procinfo::vm_rss_kib;
use crate::run::{free_port, quoted, spawn_wshd};
use crate::wsclient::{ClientOptions, OP_TEXT, Target, WsClient};

/// Arguments of `deflate-memory`.
#[derive(Debug, clap::Args)]
pub(crate) struct DeflateArgs {
    /// Directory holding the `wshd` binary.
    #[arg(long, default_value = "target/release")]
    release_dir: PathBuf,
    /// Connections opened for the memory figure.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Messages echoed for the throughput figure (in all).
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Connections the throughput messages are spread over.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Size of each JSON-like message, in bytes.
    #[arg(long, default_value_t = 2048)]
    payload_bytes: usize,
}

/// One server configuration measured.
struct Variant {
    name: &'static str,
    offer_deflate: bool,
    deflate_keys: &'static str,
}

const VARIANTS: [Variant; 6] = [
    Variant { name: "plain", offer_deflate: false, deflate_keys: "" },
    Variant {
        name: "takeover",
        offer_deflate: true,
        deflate_keys: "server_no_context_takeover = false\nclient_no_context_takeover = false\n",
    },
    Variant {
        name: "takeover-w9",
        offer_deflate: true,
        deflate_keys: "server_no_context_takeover = false\nclient_no_context_takeover = false\n\
                       server_max_window_bits = 9\n",
    },
    Variant {
        name: "server-reset",
        offer_deflate: true,
        deflate_keys: "client_no_context_takeover = false\n",
    },
    Variant {
        name: "server-reset-c10",
        offer_deflate: true,
        deflate_keys: "client_no_context_takeover = false\nclient_max_window_bits = 10\n",
    },
    Variant { name: "default", offer_deflate: true, deflate_keys: "" },
];

/// What one variant measured.
struct Figures {
    name: &'static str,
    rss_idle_kib: u64,
    per_conn_handshake_kib: f64,
    per_conn_total_kib: f64,
    msgs_per_sec: f64,
    mb_per_sec: f64,
}

/// A wshd child process, killed on drop.
struct Wshd {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Wshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn start_wshd(args: &DeflateArgs, variant: &Variant) -> Result<Wshd, BoxError> {
    let wshd_bin = std::path::absolute(args.release_dir.join("wshd"))?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let dir = std::env::temp_dir().join(format!("wshd-bench-deflate-{}-{port}", std::process::id()));
    fs::create_dir_all(dir.join("handlers"))?;
    let handlers = dir.join("handlers");
    let config = format!(
        "# Written by wshd-bench deflate-memory ({}).\n[server]\nlisten = [\"127.0.0.1:{port}\"]\n\
         max_connections = 0\nworkers = 0\n\n[handlers]\ndir = {}\nrecursive = false\n\n\
         [log]\nlevel = \"warn\"\n\n[websocket]\nping_interval_secs = 0\n\n[websocket.deflate]\n{}\n\
         [[route]]\npath = \"/_echo\"\nbuiltin = \"echo\"\n",
        variant.name,
        quoted(handlers.to_str().ok_or("the temporary directory is not UTF-8")?),
        variant.deflate_keys
    );
    fs::write(dir.join("server.toml"), config)?;
    let child = spawn_wshd(&wshd_bin, &dir.join("server.toml"), addr)?;
    let wshd = Wshd { child, addr, dir };
    Ok(wshd)
}

/// A JSON-like text of about `len` bytes that varies with `seq` (ids, prices, names), so
/// that messages resemble each other as an application's updates do.
pub(crate) fn json_payload(seq: usize, len: usize) -> String {
    let mut s = format!("{{\"type\":\"update\",\"seq\":{seq},\"items\":[");
    let mut i = 0usize;
    while s.len() + 120 < len {
        let id = seq.wrapping_mul(31).wrapping_add(i * 7919) % 100_000;
        let _ = write!(
            s,
            "{{\"id\":{id},\"name\":\"item-{}\",\"price\":{}.{:02},\"tags\":[\"t{}\",\"new\"],\"ok\":{}}},",
            id % 977,
            id % 500,
            id % 100,
            id % 13,
            id.is_multiple_of(2)
        );
        i += 1;
    }
    s.push_str("{\"end\":true}]}");
    while s.len() < len {
        s.push(' ');
    }
    s
}

fn options(variant: &Variant, seed: u64) -> ClientOptions {
    ClientOptions { offer_deflate: variant.offer_deflate, deflate_level: 6, seed }
}

/// Sends `text` and checks the echo.
async fn echo(client: &mut WsClient, text: &str, limit: Duration) -> Result<(), BoxError> {
    timeout(limit, client.writer.send(OP_TEXT, text.as_bytes())).await.map_err(|_| "send timed out")??;
    let (opcode, reply) = timeout(limit, client.reader.recv()).await.map_err(|_| "no echo (timed out)")??;
    if opcode != OP_TEXT || reply != text.as_bytes() {
        return Err("the echo differs from the message".into());
    }
    Ok(())
}

/// Opens the connections and exchanges one message on each: (idle RSS, per-connection KiB
/// after the handshakes, per-connection KiB after the exchange). The clients stay open until
/// the last reading.
async fn memory(args: &DeflateArgs, variant: &Variant, wshd: &Wshd) -> Result<(u64, f64, f64), BoxError> {
    let target = Target::parse(&format!("ws://{}/_echo", wshd.addr))?;
    let limit = Duration::from_secs(10);
    let pid = wshd.child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = vm_rss_kib(pid).ok_or("cannot read the server's RSS")?;
    let mut clients = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let client = WsClient::open(&target, None, options(variant, i as u64), limit).await?;
        if variant.offer_deflate && client.deflate.is_none() {
            return Err("the server declined permessage-deflate".into());
        }
        clients.push(client);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let opened = vm_rss_kib(pid).ok_or("cannot read the server's RSS")?;
    for (i, client) in clients.iter_mut().enumerate() {
        echo(client, &json_payload(i, args.payload_bytes), limit).await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exchanged = vm_rss_kib(pid).ok_or("cannot read the server's RSS")?;
    let n = args.connections.max(1) as f64;
    let per = |kib: u64| kib.saturating_sub(idle) as f64 / n;
    drop(clients);
    Ok((idle, per(opened), per(exchanged)))
}

/// Pipelined echo over `streams` connections: (messages/s, MB/s of payload each way).
async fn throughput(args: &DeflateArgs, variant: &Variant, wshd: &Wshd) -> Result<(f64, f64), BoxError> {
    let target = Target::parse(&format!("ws://{}/_echo", wshd.addr))?;
    let per_stream = args.messages / args.streams.max(1);
    let payloads: Vec<String> = (0..64).map(|i| json_payload(i, args.payload_bytes)).collect();
    let mut tasks = Vec::new();
    let started = Instant::now();
    for s in 0..args.streams.max(1) {
        let client =
            WsClient::open(&target, None, options(variant, 1_000_000 + s as u64), Duration::from_secs(10))
                .await?;
        let WsClient { mut reader, mut writer, .. } = client;
        let payloads = payloads.clone();
        let send = async move {
            for i in 0..per_stream {
                writer.send(OP_TEXT, payloads[i % payloads.len()].as_bytes()).await?;
            }
            Ok::<_, BoxError>(writer)
        };
        let receive = async move {
            for _ in 0..per_stream {
                let (opcode, _) = reader.recv().await?;
                if opcode != OP_TEXT {
                    return Err::<(), BoxError>("expected a text echo".into());
                }
            }
            Ok(())
        };
        tasks.push(async move { tokio::try_join!(send, receive).map(|_| ()) });
    }
    let all = futures_util::future::try_join_all(tasks);
    timeout(Duration::from_secs(300), all).await.map_err(|_| "throughput run timed out")??;
    let secs = started.elapsed().as_secs_f64();
    let total = (per_stream * args.streams.max(1)) as f64;
    Ok((total / secs, total * args.payload_bytes as f64 / secs / 1e6))
}

/// Compressed size / raw size of `count` messages sent in a row at level 6 and window 15,
/// with the compressor kept (`takeover`) or reset after each message.
fn ratio(payload_bytes: usize, count: usize, takeover: bool) -> f64 {
    let mut c = Compress::new_with_window_bits(Compression::new(6), false, 15);
    let (mut raw, mut wire) = (0usize, 0usize);
    for i in 0..count {
        let text = json_payload(i, payload_bytes);
        let mut out = Vec::with_capacity(text.len() + 64);
        let before = c.total_in();
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let done = (c.total_in() - before) as usize;
            if c.compress_vec(&text.as_bytes()[done..], &mut out, FlushCompress::Sync).is_err() {
                break;
            }
            // The sync flush is complete once all input is in and output space is left.
            if (c.total_in() - before) as usize == text.len() && out.len() < out.capacity() {
                break;
            }
        }
        raw += text.len();
        wire += out.len().saturating_sub(4);
        if !takeover {
            c.reset();
        }
    }
    wire as f64 / raw.max(1) as f64
}

/// Runs `deflate-memory`: the table and `target/bench/deflate.json`.
pub(crate) fn run(args: &DeflateArgs) -> Result<(), BoxError> {
    crate::procinfo::raise_nofile(args.connections as u64 * 2 + 1024);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut figures = Vec::new();
    for variant in &VARIANTS {
        let wshd = start_wshd(args, variant)?;
        let (idle, handshake, total) = runtime.block_on(memory(args, variant, &wshd))?;
        let (msgs, mb) = runtime.block_on(throughput(args, variant, &wshd))?;
        figures.push(Figures {
            name: variant.name,
            rss_idle_kib: idle,
            per_conn_handshake_kib: handshake,
            per_conn_total_kib: total,
            msgs_per_sec: msgs,
            mb_per_sec: mb,
        });
    }
    report(args, &figures)
}

fn report(args: &DeflateArgs, figures: &[Figures]) -> Result<(), BoxError> {
    println!(
        "{} connections, one {}-byte JSON-like message each way on each; throughput: {} messages over {} connections",
        args.connections, args.payload_bytes, args.messages, args.streams
    );
    println!("variant          idle RSS KiB  KiB/conn open  KiB/conn after 1 msg each way  msgs/s    MB/s");
    let mut json = String::from("{\"variants\":[");
    for (i, f) in figures.iter().enumerate() {
        println!(
            "{:<16} {:>12} {:>14.1} {:>31.1} {:>8.0} {:>7.1}",
            f.name,
            f.rss_idle_kib,
            f.per_conn_handshake_kib,
            f.per_conn_total_kib,
            f.msgs_per_sec,
            f.mb_per_sec
        );
        let _ = write!(
            json,
            "{}{{\"name\":\"{}\",\"rss_idle_kib\":{},\"kib_per_conn_open\":{:.1},\"kib_per_conn\":{:.1},\"msgs_per_sec\":{:.0},\"mb_per_sec\":{:.2}}}",
            if i > 0 { "," } else { "" },
            f.name,
            f.rss_idle_kib,
            f.per_conn_handshake_kib,
            f.per_conn_total_kib,
            f.msgs_per_sec,
            f.mb_per_sec
        );
    }
    let (kept, reset) = (ratio(args.payload_bytes, 1000, true), ratio(args.payload_bytes, 1000, false));
    println!(
        "compressed/raw over 1,000 such messages: context takeover {kept:.3}, reset per message {reset:.3}"
    );
    let _ = writeln!(json, "],\"ratio_takeover\":{kept:.4},\"ratio_reset\":{reset:.4}}}");
    fs::create_dir_all("target/bench")?;
    fs::write("target/bench/deflate.json", json)?;
    println!("wrote target/bench/deflate.json");
    Ok(())
}
