//! wshd's integration tests: each starts the real `wshd` binary on a port the OS picks, with
//! real plugins in a temporary handler directory, and talks to it over real sockets.

mod config;
mod echo;
mod frames;
mod handshake;
mod hooks;
mod plugins;
mod reload;
mod routes;
mod static_files;
