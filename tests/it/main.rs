//! wshd's integration tests: each starts the real `wshd` binary on a port the OS picks, with
//! real plugins in a temporary handler directory, and talks to it over real sockets.

mod admin;
mod attacks;
mod auth;
mod blocking;
mod builtin;
mod cgi;
mod chat;
mod client;
mod cmd;
mod config;
mod echo;
mod examples;
mod fd_limit;
mod frames;
mod handler_options;
mod handshake;
mod hooks;
mod io;
mod limits;
mod nginx;
mod plugins;
mod proxy;
mod quarantine;
mod reload;
mod rooms;
mod routes;
mod scale_out;
mod shutdown;
mod static_files;
mod strict;
mod tls;
mod watchdog;
mod workers;
