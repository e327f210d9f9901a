//! hookrelay: a webhook-to-Kafka relay.
//!
//! A sender POSTs to `/hooks/{source}[/{event}]`; the relay authenticates the request, checks
//! the body is well-formed JSON, and publishes the raw bytes to Kafka with CloudEvents headers,
//! answering 2xx once the event has reached its source's durability point.
//!
//! Where to look: [`settings`] (the file as written), [`config`] (its checks: the validated configuration), [`secret`] (secret references), [`names`] (source names, event types), [`source`] (a sender's rules),
//! [`auth`] (credentials), [`client_ip`] (IP allowlists), [`ingress`] (the HTTP request path), [`json`] (body validation), [`schema`] (JSON Schema per event),
//! [`event`] (ids, keys), [`identity`] (what names one occurrence of an event), [`spool`] (the durable write-ahead spool and its forwarder),
//! [`idempotency`] (the deduplication window), [`record`] (the Kafka record an event becomes), [`delivery`] (the ack modes), [`publisher`] (the Kafka producer),
//! [`topics`] (topic existence), [`retry`] (`Retry-After` estimates),
//! [`events`] (outcomes outside the request path: what each logs and counts), [`health`] (readiness), [`admin`] (metrics and probes), [`metrics`], [`telemetry`] (logs),
//! [`app`] (start-up and shutdown), [`tls`] (HTTPS on the ingress), [`reload`] (configuration reload), [`tail`] (reading a topic back), [`register`] (subscribing at the sender), [`cli`] (commands).

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod delivery;
pub mod event;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod identity;
pub mod ingress;
pub mod json;
pub mod metrics;
pub mod names;
pub mod priority;
pub mod publisher;
pub mod record;
pub mod register;
pub mod reload;
pub mod retry;
pub mod schema;
pub mod secret;
pub mod settings;
pub mod source;
pub mod spool;
pub mod tail;
pub mod telemetry;
pub mod template;
pub mod tls;
pub mod topics;
