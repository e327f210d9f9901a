//! Configuration: built-in defaults → TOML file → `HOOKRELAY__SECTION__KEY` environment variables,
//! parsed once at start into types that cannot be invalid at run time.
//!
//! Loading collects every problem it finds (not only the first) and reports each with the key path
//! it belongs to, so `hookrelay check-config` can print a complete list.

use std::path::Path;

use figment::providers::{Env, Format, Toml};
use figment::Figment;

// The file's types, re-exported: what most callers of `Config::load` also name.
pub use crate::secret::Secret;
pub use crate::settings::{
    AckMode, AuthSettings, ConfigError, ConfigErrors, DeliverySettings, EventIdentitySettings,
    IdempotencySettings, KafkaSettings, LogFormat, RateLimitSettings, RegisterSettings,
    ServerSettings, Settings, SourceSettings, TelemetrySettings, TlsSettings, TokenAuthSettings,
    TokenLocation, TAGMANGO_REGISTER_API_URL,
};

use crate::client_ip::IpRanges;
use crate::source::Source;

/// The largest body any limit may allow: what one spool frame holds (256 MiB, checked by the
/// spool's codec), less 1 MiB for the rest of the record.
pub const MAX_BODY_BYTES: usize = 255 * 1024 * 1024;

/// librdkafka's default `message.max.bytes`: the largest record the producer takes.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The most a record's key, headers and envelope add to its value that a body limit must leave
/// room for (event id, type, time, source, content type, auth method and a key such as an email).
pub const RECORD_HEADROOM: usize = 4096;

/// The default configuration file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/hookrelay.toml";

/// Prefix of environment overrides; `__` separates the key path (`HOOKRELAY__KAFKA__BROKERS`).
pub const ENV_PREFIX: &str = "HOOKRELAY__";

/// A configuration that passed every check.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub kafka: KafkaSettings,
    pub delivery: DeliverySettings,
    pub telemetry: TelemetrySettings,
    /// Sources in name order.
    pub sources: Vec<Source>,
    /// `server.trusted_proxies`, parsed.
    pub trusted_proxies: IpRanges,
    /// `server.tls`, read and checked: the certificate chain and its key.
    pub tls: Option<std::sync::Arc<rustls::sign::CertifiedKey>>,
    /// The file this configuration was read from (what a reload reads again).
    pub path: Option<std::path::PathBuf>,
}

impl Config {
    /// Reads `path`, applies environment overrides, and validates the result.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let settings = Config::load_settings(path)?;
        let mut config = Config::from_settings(settings)?;
        config.path = Some(path.to_owned());
        Ok(config)
    }

    /// Reads `path` and applies environment overrides, without the checks of [`Config::load`]:
    /// enough for the tools that only need the Kafka or spool settings (`hookrelay tail`,
    /// `hookrelay spool status`), so that an operator can run them without the senders' secrets.
    pub fn load_settings(path: &Path) -> Result<Settings, ConfigErrors> {
        if !path.is_file() {
            return Err(ConfigErrors::one(
                "",
                format!("configuration file {} does not exist", path.display()),
            ));
        }
        Figment::new()
            .merge(Toml::file(path))
            .merge(Env::prefixed(ENV_PREFIX).split("__"))
            .extract()
            .map_err(ConfigErrors::from_figment)
    }

    /// Validates parsed settings: addresses, limits, sources, secrets.
    pub fn from_settings(settings: Settings) -> Result<Config, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let (trusted_proxies, tls) = check_server(&settings.server, &mut errors);
        let mut settings = settings;
        check_kafka(&settings.kafka, &mut errors);
        let resolved = resolve_kafka_secrets(&mut settings.kafka);
        for (key, reason) in resolved
            .err()
            .unwrap_or_else(|| check_kafka_options(&settings.kafka))
        {
            errors.push(format!("kafka.options.\"{key}\""), reason);
        }
        check_delivery(&settings, &mut errors);
        if let Err(reason) = tracing_subscriber::EnvFilter::try_new(&settings.telemetry.level) {
            errors.push(
                "telemetry.level",
                format!("not a valid log filter: {reason}"),
            );
        }
        let sources = build_sources(&settings, &mut errors);
        check_body_limits(&settings, &mut errors);

        errors.into_result(Config {
            server: settings.server,
            kafka: settings.kafka,
            delivery: settings.delivery,
            telemetry: settings.telemetry,
            sources,
            trusted_proxies,
            tls,
            path: None,
        })
    }

    /// The largest Kafka record the producer takes (`message.max.bytes`): what a request's
    /// record may not exceed, or it is refused with 413 before it is acknowledged.
    pub fn max_record_bytes(&self) -> usize {
        max_record_bytes(&self.kafka).unwrap_or(DEFAULT_MESSAGE_MAX_BYTES)
    }

    /// The topics every source with an events list publishes to, sorted, each once: they must
    /// exist before the relay serves (sources without a list find theirs per request).
    pub fn required_topics(&self) -> Vec<String> {
        let mut required: Vec<String> = self
            .sources
            .iter()
            .filter_map(|source| source.known_topics())
            .flatten()
            .chain(self.delivery.dead_letter_topic.clone())
            .collect();
        required.sort();
        required.dedup();
        required
    }

    /// Whether any source acknowledges on the spool (so the spool must be opened).
    pub fn uses_spool(&self) -> bool {
        self.sources
            .iter()
            .any(|source| source.ack == AckMode::Spool)
    }

    /// Every source acknowledges at the spool: no request waits for the Kafka producer, whose
    /// threads may then run as background work ([`crate::priority`]).
    pub fn only_spool(&self) -> bool {
        self.sources
            .iter()
            .all(|source| source.ack == AckMode::Spool)
    }
}

/// `[server]`: listeners apart, limits above zero, proxies parsed, the TLS files read.
#[allow(clippy::type_complexity)]
fn check_server(
    server: &ServerSettings,
    errors: &mut ConfigErrors,
) -> (IpRanges, Option<std::sync::Arc<rustls::sign::CertifiedKey>>) {
    // Port 0 on both is two ports the system chooses, never the same one.
    if server.listen == server.admin_listen && server.listen.port() != 0 {
        errors.push(
            "server.admin_listen",
            "must differ from server.listen: the admin endpoints must not share the ingress port",
        );
    }
    for (key, zero) in [
        ("server.max_body_bytes", server.max_body_bytes == 0),
        ("server.max_json_depth", server.max_json_depth == 0),
        ("server.body_timeout_ms", server.body_timeout_ms.is_zero()),
    ] {
        if zero {
            errors.push(key, "must be greater than 0");
        }
    }
    let trusted_proxies = IpRanges::parse(&server.trusted_proxies).unwrap_or_else(|bad| {
        for (index, reason) in bad {
            errors.push(format!("server.trusted_proxies[{index}]"), reason);
        }
        IpRanges::default()
    });
    let tls = server.tls.as_ref().and_then(|tls| {
        crate::tls::load(tls)
            .map_err(|reason| errors.push("server.tls", reason.to_string()))
            .ok()
    });
    (trusted_proxies, tls)
}

fn check_kafka(kafka: &KafkaSettings, errors: &mut ConfigErrors) {
    if kafka.brokers.trim().is_empty() {
        errors.push("kafka.brokers", "must list at least one host:port");
    }
    if kafka.topic_partitions < 1 {
        errors.push("kafka.topic_partitions", "must be at least 1");
    }
    if kafka.topic_replication < 1 {
        errors.push("kafka.topic_replication", "must be at least 1");
    }
}

/// The librdkafka properties that hold a credential: written as a secret reference (`env:NAME`,
/// `file:/path`) like every other secret, never literally.
pub const KAFKA_SECRET_OPTIONS: &[&str] = &[
    "sasl.password",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
];

/// The `[kafka.options]` librdkafka refuses (an unknown or misspelt property, one this build does
/// not support, a value out of range), each with librdkafka's reason: checked at load, so that
/// no Kafka client is ever created from them. The value is never in a reason (librdkafka's own
/// message repeats it, and a misspelt `sasl.pasword` holds a password).
pub fn check_kafka_options(kafka: &KafkaSettings) -> Vec<(String, String)> {
    kafka
        .options
        .iter()
        .filter_map(|(key, value)| {
            let mut one = rdkafka::ClientConfig::new();
            one.set(key, value);
            let error = one.create_native_config().err()?;
            let reason = match &error {
                rdkafka::error::KafkaError::ClientConfig(_, description, ..) => description.clone(),
                other => other.to_string(),
            };
            let reason = if value.is_empty() {
                reason
            } else {
                reason.replace(value.as_str(), "<value>")
            };
            Some((
                key.clone(),
                format!("librdkafka does not accept it: {reason}"),
            ))
        })
        .collect()
}

/// Replaces the secret references among `[kafka.options]` by the secrets they name, for the
/// Kafka clients; the keys and reasons of those that cannot be resolved (the secret never in a
/// reason).
pub fn resolve_kafka_secrets(kafka: &mut KafkaSettings) -> Result<(), Vec<(String, String)>> {
    let mut bad = Vec::new();
    for key in KAFKA_SECRET_OPTIONS {
        let Some(value) = kafka.options.get_mut(*key) else {
            continue;
        };
        match crate::secret::Secret::resolve(value).and_then(|secret| {
            String::from_utf8(secret.expose().to_vec())
                .map_err(|_| "the secret is not UTF-8 text".to_owned())
        }) {
            Ok(resolved) => *value = resolved,
            Err(reason) => bad.push(((*key).to_owned(), reason)),
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad)
    }
}

/// `[delivery]`, and the sources that need its dead-letter topic.
fn check_delivery(settings: &Settings, errors: &mut ConfigErrors) {
    let delivery = &settings.delivery;
    if delivery.broker_timeout_ms.is_zero() {
        errors.push("delivery.broker_timeout_ms", "must be greater than 0");
    }
    if let Some(topic) = &delivery.dead_letter_topic {
        if let Err(reason) = crate::source::TopicTemplate::parse(topic).and_then(|template| {
            if template.uses_event() || topic.contains('{') {
                Err("a dead-letter topic is one fixed name, without placeholders".to_owned())
            } else {
                Ok(())
            }
        }) {
            errors.push("delivery.dead_letter_topic", reason);
        }
    }
    for (name, source) in &settings.sources {
        if source.dead_letter_refused && delivery.dead_letter_topic.is_none() {
            errors.push(
                format!("sources.{name}.dead_letter_refused"),
                "needs delivery.dead_letter_topic",
            );
        }
    }
    if delivery.spool_max_bytes < 64 * 1024 {
        errors.push("delivery.spool_max_bytes", "must be at least 65536");
    }
}

/// Every `[sources.NAME]`, in name order; at least one.
fn build_sources(settings: &Settings, errors: &mut ConfigErrors) -> Vec<Source> {
    if settings.sources.is_empty() {
        errors.push(
            "sources",
            "no source is configured: add at least one [sources.NAME] table",
        );
    }
    let mut sources = Vec::with_capacity(settings.sources.len());
    for (name, source) in &settings.sources {
        match Source::from_settings(name, source, settings) {
            Ok(source) => sources.push(source),
            Err(source_errors) => errors.extend(source_errors),
        }
    }
    sources
}

/// `kafka.options."message.max.bytes"`, or librdkafka's default; `Err` when it is not a number.
fn max_record_bytes(kafka: &KafkaSettings) -> Result<usize, String> {
    match kafka.options.get("message.max.bytes") {
        None => Ok(DEFAULT_MESSAGE_MAX_BYTES),
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a number of bytes")),
    }
}

/// Every body limit must leave room in a Kafka record for its key and headers, and fit the spool's
/// frames: a body the relay accepted but Kafka cannot take would wait in the spool forever.
fn check_body_limits(settings: &Settings, errors: &mut ConfigErrors) {
    let record_limit = match max_record_bytes(&settings.kafka) {
        Ok(limit) => limit,
        Err(reason) => {
            errors.push("kafka.options.\"message.max.bytes\"", reason);
            return;
        }
    };
    let largest = record_limit
        .saturating_sub(RECORD_HEADROOM)
        .min(MAX_BODY_BYTES);
    let limits = std::iter::once((
        "server.max_body_bytes".to_owned(),
        settings.server.max_body_bytes,
    ))
    .chain(settings.sources.iter().filter_map(|(name, source)| {
        Some((
            format!("sources.{name}.max_body_bytes"),
            source.max_body_bytes?,
        ))
    }));
    for (key, limit) in limits {
        if limit > largest {
            errors.push(
                key,
                format!(
                    "{limit} bytes cannot be published: a Kafka record holds at most {record_limit} bytes (kafka.options.\"message.max.bytes\") and the key and headers need up to {RECORD_HEADROOM}; set at most {largest}, or raise message.max.bytes together with the topics' max.message.bytes"
                ),
            );
        }
    }
}
