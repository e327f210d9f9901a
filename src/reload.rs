//! Configuration reload (SIGHUP, or `POST /-/reload` on the admin listener).
//!
//! The file is read and checked exactly as at start. A configuration that fails its checks, or
//! that needs what this process cannot give it (a spool that is not open, topics that do not
//! exist), is refused: the relay keeps serving with the configuration it has, logs why, and sets
//! `hookrelay_config_reload_success` to 0. Otherwise sources, secrets, limits, schemas and timeouts
//! switch at once; requests in flight finish with the configuration they started with.
//! A new TLS certificate (`server.tls` files) serves new connections at once. Settings only a
//! restart can apply (listeners, HTTPS on or off, workers, Kafka connection, spool location,
//! logging, deduplication windows) are reported, and keep their running values.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::ingress::Ingress;
use crate::publisher::Publisher;
use crate::tls::Certificates;
use crate::topics::Topics;

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error("these Kafka topics do not exist, or this relay's Kafka user may not see them (ACL Describe): {}", .0.join(", "))]
    MissingTopics(Vec<String>),
    #[error(transparent)]
    CreateTopics(#[from] crate::publisher::TopicError),
    #[error(transparent)]
    SpoolNotOpen(#[from] crate::ingress::SpoolNotOpen),
}

/// A reload asked for over HTTP, answered with its outcome.
pub type ReloadRequest = oneshot::Sender<ReloadOutcome>;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// `reloaded` or `failed`.
    pub status: &'static str,
    /// Changed keys that only take effect after a restart.
    pub restart_required: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a reload needs from the running relay.
pub struct Reloader {
    pub path: PathBuf,
    /// The configuration the process started with (what its listeners, producer and spool use).
    pub started: Config,
    pub ingress: actix_web::web::Data<Ingress>,
    pub topics: Arc<Topics>,
    pub publisher: Arc<Publisher>,
    /// The ingress certificate, when it serves HTTPS: a reload re-reads the files and swaps it.
    pub certificates: Option<Arc<Certificates>>,
    pub certificate_expiry: prometheus::IntGauge,
    pub success: prometheus::IntGauge,
}

impl Reloader {
    pub async fn reload(&self) -> ReloadOutcome {
        let outcome = match self.try_reload().await {
            Ok(restart_required) => ReloadOutcome {
                status: "reloaded",
                restart_required,
                reason: None,
            },
            Err(error) => ReloadOutcome {
                status: "failed",
                restart_required: Vec::new(),
                reason: Some(error.to_string()),
            },
        };
        match &outcome.reason {
            None => {
                self.success.set(1);
                tracing::info!(
                    restart_required = outcome.restart_required.join(", "),
                    "configuration reloaded"
                );
            }
            Some(reason) => {
                self.success.set(0);
                tracing::error!(
                    reason,
                    "configuration reload refused; serving with the previous configuration"
                );
            }
        }
        outcome
    }

    async fn try_reload(&self) -> Result<Vec<String>, ReloadError> {
        let config = Config::load(&self.path)?;
        let required = config.required_topics();
        let missing: Vec<String> = required
            .iter()
            .filter(|topic| !self.topics.exists(topic))
            .cloned()
            .collect();
        if !missing.is_empty() {
            if !self.started.kafka.create_topics {
                return Err(ReloadError::MissingTopics(missing));
            }
            let kafka = &self.started.kafka;
            self.publisher
                .create_topics(
                    &missing,
                    kafka.topic_partitions,
                    kafka.topic_replication,
                    self.started.kafka.metadata_timeout_ms,
                )
                .await?;
            for topic in &missing {
                self.topics.insert(topic.clone());
            }
        }
        self.ingress.reload(&config)?;
        self.topics.set_required(required);
        if let (Some(certificates), Some(key)) = (&self.certificates, &config.tls) {
            certificates.replace(key.clone());
            crate::tls::watch_expiry(key, &self.certificate_expiry);
        }
        Ok(restart_required(&self.started, &config))
    }
}

/// The keys whose new values only a restart applies.
pub fn restart_required(running: &Config, new: &Config) -> Vec<String> {
    let mut keys = BTreeSet::new();
    let mut check = |key: &str, changed: bool| {
        if changed {
            keys.insert(key.to_owned());
        }
    };
    let (a, b) = (&running.server, &new.server);
    check("server.listen", a.listen != b.listen);
    check("server.admin_listen", a.admin_listen != b.admin_listen);
    check("server.workers", a.workers != b.workers);
    check(
        "server.body_memory_bytes",
        a.body_memory_bytes != b.body_memory_bytes,
    );
    // Turning HTTPS on or off changes the listener; new certificate files do not.
    check("server.tls", a.tls.is_some() != b.tls.is_some());
    check(
        "server.shutdown_timeout_ms",
        a.shutdown_timeout_ms != b.shutdown_timeout_ms,
    );
    let (a, b) = (&running.kafka, &new.kafka);
    check("kafka.brokers", a.brokers != b.brokers);
    check("kafka.client_id", a.client_id != b.client_id);
    check("kafka.options", a.options != b.options);
    check("kafka.create_topics", a.create_topics != b.create_topics);
    check(
        "kafka.metadata_timeout_ms",
        a.metadata_timeout_ms != b.metadata_timeout_ms,
    );
    let (a, b) = (&running.delivery, &new.delivery);
    check("delivery.spool_dir", a.spool_dir != b.spool_dir);
    check(
        "delivery.spool_max_bytes",
        a.spool_max_bytes != b.spool_max_bytes,
    );
    let (a, b) = (&running.telemetry, &new.telemetry);
    check("telemetry.format", a.format != b.format);
    check("telemetry.level", a.level != b.level);
    for source in &new.sources {
        // While every source acknowledged at the spool, the producer's threads were started at
        // background priority (crate::priority); a source that waits for Kafka needs them at the
        // relay's own.
        check(
            &format!("sources.{}.ack", source.name),
            running.only_spool() && source.ack != crate::settings::AckMode::Spool,
        );
        let before = running
            .sources
            .iter()
            .find(|old| old.name == source.name)
            .and_then(|old| old.dedup);
        // The windows are made at start; identity rules and ttls take effect on reload.
        check(
            &format!("sources.{}.idempotency", source.name),
            before != source.dedup,
        );
    }
    keys.into_iter().collect()
}
