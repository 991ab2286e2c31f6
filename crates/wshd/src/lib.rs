//! # wshd: a WebSocket host server
//!
//! wshd is to Rust what mod_pywebsocket is to Python: drop a compiled `*_wsh` handler plugin
//! into a directory and it serves a WebSocket endpoint. This crate is the host; handler
//! authors use the `wshd-sdk` crate.
//!
//! The pipeline for one connection: [`server`] accepts TCP, the HTTP service routes the
//! request (a handler path, or the static document root), validates the RFC 6455 handshake,
//! runs the handler's `do_handshake` through the plugin ABI, answers 101, and a session
//! drives the handler's `transfer_data` until the connection closes.
//!
//! Around that: optional TLS on every listener ([`tls`]), HTTP Basic authentication, CGI
//! scripts and the static document root on the same port, and an echo client
//! ([`client`], `wshd client`) like pywebsocket's `echo_client.py`.
//!
//! For operations: trusted reverse proxies (`Forwarded`, `X-Forwarded-*`), connection limits,
//! keepalive pings, idle and slow-reader timeouts, an admin listener with `/healthz`,
//! `/readyz` and Prometheus `/metrics`, graceful shutdown (close 1001 and a drain window) and
//! a JSON log format; see `docs/operations.md`. Rooms can span several nodes through Redis
//! (`[broker]`; the `broker` module and `docs/scale-out.md`).

mod addrs;
mod admin;
pub mod allocator;
mod broker;
mod budget;
mod child;
pub mod cli;
pub mod client;
pub mod config;
mod fd_limit;
#[doc(hidden)]
pub mod fuzz_api;
mod http;
mod http2;
mod lifecycle;
pub mod log_file;
pub mod logging;
mod metrics;
mod pending;
pub mod plugin;
pub mod reload;
mod rooms;
mod scoreboard;
pub mod server;
pub mod state;
pub mod supervise;
pub mod tls;
mod watchdog;
mod ws;

pub use config::Config;
pub use reload::ConfigSource;
pub use server::{Drained, Server, StartError};
