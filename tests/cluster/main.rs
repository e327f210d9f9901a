//! Fault tests against a replicated Apache Kafka cluster: three brokers and three KRaft
//! controllers, each its own process (`fixture`), replication factor 3 and
//! `min.insync.replicas = 2`. Each test runs a relay in `spool` or `broker` mode with a steady
//! stream of distinct TagMango events (`stream`), injects one fault a Kafka operator sees in a
//! month, heals it, and reads every acknowledged id back by `ce_id` (`faults`).
//!
//! One cluster for the whole binary (six JVMs on a 2-core machine are started once); the tests
//! take it in turn and each heals it before it starts.

// The harness sets the brokers' parent-death signal and signals child processes.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)]
// The harness is shared with the `api` binary, which uses the parts this one does not.
#![allow(dead_code, unused_imports)]

#[path = "../api/broker.rs"]
mod broker;
mod faults;
mod fixture;
#[path = "../api/helpers.rs"]
mod helpers;
mod stream;
