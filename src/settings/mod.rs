//! The configuration file as written: one serde tree, every key documented.
//!
//! These types mirror `config/hookrelay.toml` and the `HOOKRELAY__SECTION__KEY` environment
//! overrides. A leaf: they are only a transport, and [`crate::config::Config::load`] turns them into run-time types
//! that cannot be invalid (resolved secrets, parsed topic templates, checked addresses).
//! Every struct denies unknown keys, so a typo is an error rather than a silently ignored setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod auth;
mod errors;

pub use auth::*;
pub use errors::{ConfigError, ConfigErrors};

/// `*_ms` keys: milliseconds in the file (the unit is in the name), a [`Duration`] from the
/// moment the file is read.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }
}

/// What happens to a body that fails its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaMode {
    /// Refuse it: 422 `schema_violation`.
    #[default]
    Enforce,
    /// Accept it; count it in `hookrelay_schema_violations_total` and log where it failed.
    Observe,
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub kafka: KafkaSettings,
    #[serde(default)]
    pub delivery: DeliverySettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    /// Webhook senders, by the name used in `/hooks/{source}`.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceSettings>,
}

/// `[server]`: the two HTTP listeners and the limits applied to every request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Ingress listener for webhook senders.
    pub listen: SocketAddr,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`); keep it off the public network.
    pub admin_listen: SocketAddr,
    /// Largest accepted request body; a source may lower or raise it.
    pub max_body_bytes: usize,
    /// Request body bytes the relay holds at once, all requests together (a body takes its
    /// bytes before it is read, when it declares its length, else as it arrives).
    pub body_memory_bytes: usize,
    /// Time allowed from the request head to the last body byte.
    #[serde(with = "millis")]
    pub body_timeout_ms: Duration,
    /// Time allowed for in-flight requests and the producer flush at shutdown.
    #[serde(with = "millis")]
    pub shutdown_timeout_ms: Duration,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Deepest nesting of arrays and objects accepted in a JSON body.
    pub max_json_depth: usize,
    /// Proxies (CIDR networks or addresses) whose `X-Forwarded-For` is believed when checking a
    /// source's `allow_ips`; empty means the TCP peer is always the client.
    pub trusted_proxies: Vec<String>,
    /// HTTPS on the ingress listener: `{ cert = "file:/path/fullchain.pem", key = "file:/path/key.pem" }`.
    /// Absent: plain HTTP (for a reverse proxy in front, or a private network).
    pub tls: Option<TlsSettings>,
}

/// `server.tls`: a PEM certificate chain (leaf first) and its private key, each `file:/path` or
/// `env:NAME`. Both are read again on reload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub cert: String,
    pub key: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            // What fits a Kafka record under librdkafka's default message.max.bytes (1 000 000)
            // with room for its key and headers.
            max_body_bytes: 960 * 1024,
            body_memory_bytes: 64 * 1024 * 1024,
            body_timeout_ms: Duration::from_millis(10_000),
            shutdown_timeout_ms: Duration::from_millis(10_000),
            workers: 0,
            max_json_depth: 127,
            trusted_proxies: Vec::new(),
            tls: None,
        }
    }
}

/// `[kafka]`: the cluster and the producer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma separated (`host:port,host:port`).
    pub brokers: String,
    /// Kafka `client.id` of the producer.
    pub client_id: String,
    /// Create missing topics at start instead of refusing to start.
    pub create_topics: bool,
    /// Partitions of topics created by the relay.
    pub topic_partitions: i32,
    /// Replication factor of topics created by the relay.
    pub topic_replication: i32,
    /// How long to wait for cluster metadata at start and on each readiness probe of Kafka.
    #[serde(with = "millis")]
    pub metadata_timeout_ms: Duration,
    /// librdkafka properties, applied after hookrelay's own (so they win).
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".to_owned(),
            client_id: "hookrelay".to_owned(),
            create_topics: false,
            topic_partitions: 3,
            topic_replication: 1,
            metadata_timeout_ms: Duration::from_millis(5_000),
            options: BTreeMap::new(),
        }
    }
}

/// How far an event must get before the sender is answered 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// fsync'd to the local write-ahead spool.
    Spool,
    /// Acknowledged by Kafka with acks=all.
    Broker,
    /// Handed to the producer's in-memory queue.
    Memory,
}

impl AckMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Spool => "spool",
            AckMode::Broker => "broker",
            AckMode::Memory => "memory",
        }
    }
}

/// `[delivery]`: the durability point.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// Default ack mode of every source.
    pub ack: AckMode,
    /// In `broker` mode, how long a request waits for Kafka's acknowledgement before a 503.
    #[serde(with = "millis")]
    pub broker_timeout_ms: Duration,
    /// Directory of the write-ahead spool (`ack = "spool"`).
    pub spool_dir: PathBuf,
    /// Bytes of unacknowledged records the spool may hold; beyond it, 503 `spool_full`.
    pub spool_max_bytes: u64,
    /// Topic for events Kafka refuses for good (too large, topic deleted, not authorized,
    /// invalid) and, per source, authentic events the relay refused: same key, value and
    /// headers, plus `hookrelay_dead_reason` and `hookrelay_dead_topic`. Absent: such spooled
    /// records go to the spool's `dead/` directory only.
    pub dead_letter_topic: Option<String>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            ack: AckMode::Spool,
            broker_timeout_ms: Duration::from_millis(5_000),
            spool_dir: PathBuf::from("data/spool"),
            spool_max_bytes: 1 << 30,
            dead_letter_topic: None,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[telemetry]`: logs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `hookrelay=debug,rdkafka=warn`); `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// `[sources.NAME]`: one webhook sender.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// Topic template; `{source}` and `{event}` are substituted.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Allowed event types; absent means any event that has a topic.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// How the sender proves who it is. Required: `type = "none"` must be written out.
    pub auth: AuthSettings,
    /// Which body fields make the event id when the sender sends no id of its own.
    #[serde(default)]
    pub idempotency: Option<IdempotencySettings>,
    /// Record key: a JSON pointer into the body (`/email`) or `header:NAME`.
    #[serde(default)]
    pub key: Option<String>,
    /// Overrides `delivery.ack` for this source.
    #[serde(default)]
    pub ack: Option<AckMode>,
    /// Accepted media types of the request body (parameters such as `charset` are ignored).
    #[serde(default = "default_content_types")]
    pub content_types: Vec<String>,
    /// Status of an accepted request: 200, 202 or 204.
    #[serde(default = "default_success_status")]
    pub success_status: u16,
    /// Overrides `server.max_body_bytes` for this source.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Request body bytes this source's requests hold at once; default half of
    /// `server.body_memory_bytes`, so that a flood on one source leaves room for the others.
    #[serde(default)]
    pub body_memory_bytes: Option<usize>,
    /// Requests per second this source may send: `{ per_second = N, burst = M }`.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSettings>,
    /// Where the sender's event id is: `header:NAME` or a JSON pointer (overrides the auth preset's).
    #[serde(default)]
    pub event_id_from: Option<String>,
    /// Where the sender's event type is, when the path has no `{event}` segment: `header:NAME` or a
    /// JSON pointer (overrides the auth preset's).
    #[serde(default)]
    pub event_from: Option<String>,
    /// Sender headers copied into the record as `http_<lower-case name>`; never credentials.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// Client addresses allowed to post (CIDR networks or addresses); absent means any.
    #[serde(default)]
    pub allow_ips: Option<Vec<String>>,
    /// JSON Schema file per event: a path template with `{source}` and `{event}`, relative to
    /// the working directory.
    #[serde(default)]
    pub schema: Option<String>,
    /// `enforce` (default: refuse with 422) or `observe` (accept, count and log).
    #[serde(default)]
    pub schema_mode: Option<SchemaMode>,
    /// Also keep, on the dead-letter topic, the events this source's sender authenticated but
    /// the relay refused (`schema_violation` in enforce mode, `invalid_json`): the sender still
    /// gets the 4xx, and a sender that never resends loses nothing.
    #[serde(default)]
    pub dead_letter_refused: bool,
    /// Example body per event: a path template with `{source}` and `{event}`. Only
    /// `check-config` reads it, to warn when an event's identity fields are not in its sample.
    #[serde(default)]
    pub samples: Option<String>,
    /// The sender's webhook registration API, for `hookrelay register` (TagMango's integration
    /// API). Only that command reads it; the relay itself never calls the sender.
    #[serde(default)]
    pub register: Option<RegisterSettings>,
}

impl SourceSettings {
    /// A source authenticated by `auth`, every other key at its default (as the smallest valid
    /// `[sources.NAME]` table with only `auth` written).
    pub fn new(auth: AuthSettings) -> SourceSettings {
        SourceSettings {
            topic: default_topic(),
            events: None,
            auth,
            idempotency: None,
            key: None,
            ack: None,
            content_types: default_content_types(),
            success_status: default_success_status(),
            max_body_bytes: None,
            body_memory_bytes: None,
            rate_limit: None,
            event_id_from: None,
            event_from: None,
            forward_headers: Vec::new(),
            allow_ips: None,
            schema: None,
            schema_mode: None,
            dead_letter_refused: false,
            samples: None,
            register: None,
        }
    }
}

/// `[sources.NAME.register]`: where and with which key `hookrelay register` subscribes the relay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterSettings {
    /// The creator's API key: `env:NAME` or `file:/path`. Resolved by `hookrelay register` only,
    /// so the relay does not need it to serve.
    pub api_key: String,
    /// The registration endpoint.
    #[serde(default = "default_register_api_url")]
    pub api_url: String,
}

/// TagMango's documented webhook registration endpoint.
pub const TAGMANGO_REGISTER_API_URL: &str =
    "https://api-prod-new.tagmango.com/api/v1/integration/webhook/webhook";

fn default_register_api_url() -> String {
    TAGMANGO_REGISTER_API_URL.to_owned()
}

/// `rate_limit = { per_second = N, burst = M }`: a token bucket per source.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub per_second: u32,
    /// Requests allowed at once after a quiet period; defaults to `per_second`.
    #[serde(default)]
    pub burst: Option<u32>,
}

fn default_topic() -> String {
    "webhooks.{source}.{event}".to_owned()
}

fn default_content_types() -> Vec<String> {
    vec!["application/json".to_owned()]
}

fn default_success_status() -> u16 {
    200
}

/// `idempotency = { fields = [...], ttl_secs = N, events = { "order.*" = { fields = [...] } } }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencySettings {
    /// JSON pointers whose values, with the event type, make the event id; or `["body"]`.
    /// When a listed field is absent, null or an empty string, the whole body is hashed instead.
    pub fields: Vec<String>,
    /// Deduplication window: a repeat within it is answered `"duplicate"` and not published.
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
    /// Most ids remembered for this source (least recently used are forgotten first).
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    /// Identity of particular events, by event type (`order.created.completed`) or prefix
    /// (`order.*`): an exact name wins over a prefix, a longer prefix over a shorter one; events
    /// that match none use `fields` and `ttl_secs` above.
    #[serde(default)]
    pub events: BTreeMap<String, EventIdentitySettings>,
}

impl IdempotencySettings {
    /// An identity made of `fields`, with the default window and capacity.
    pub fn new(fields: &[&str]) -> IdempotencySettings {
        IdempotencySettings {
            fields: fields.iter().map(|field| (*field).to_owned()).collect(),
            ttl_secs: default_ttl_secs(),
            max_entries: default_max_entries(),
            events: BTreeMap::new(),
        }
    }
}

/// `events."order.*" = { fields = ["/orderId"], ttl_secs = N }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventIdentitySettings {
    /// As `idempotency.fields`, for these events.
    pub fields: Vec<String>,
    /// As `idempotency.ttl_secs`, for these events; defaults to the source's.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

fn default_max_entries() -> usize {
    100_000
}

fn default_ttl_secs() -> u64 {
    86_400
}
