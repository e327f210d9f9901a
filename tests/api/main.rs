//! Integration tests: one binary, against Apache Kafka started by the harness (`broker`).

// The harness sets the broker's parent-death signal and signals child processes.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)]

mod allowlist;
mod auth;
mod broker;
mod cli;
mod config_docs;
mod delivery;
mod disk;
mod guide;
mod helpers;
mod hostile;
mod identity;
mod interop;
mod kafka_security;
mod logs;
mod memory;
mod observability;
mod poison;
mod publish;
mod refusals;
mod register;
mod reload;
mod schema;
mod senders;
mod spool;
mod tls;
