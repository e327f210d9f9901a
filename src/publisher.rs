//! The Kafka producer: created, used, flushed and closed here and nowhere else.
//!
//! librdkafka keeps its own queue of records: `send` only enqueues (it fails at once with
//! `QueueFull` when `queue.buffering.max.*` is reached), a background thread sends batches, and
//! each record's outcome arrives later as a *delivery report*. A record is reported failed only
//! after `message.timeout.ms`; until then librdkafka retries it itself, and with
//! `enable.idempotence` those retries cannot duplicate or reorder it.
//!
//! hookrelay uses a [`ThreadedProducer`] whose delivery callback ([`DeliveryContext`]) counts the
//! outcome and, in `broker` ack mode, wakes the one request waiting for it through a oneshot
//! channel. That costs far less per record than awaiting a `FutureProducer` future per request,
//! and `memory` mode pays nothing beyond the enqueue.
//!
//! Dropping a producer purges its queue, so [`Publisher::flush`] must run before shutdown ends.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::Message;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::metrics::SourceMetrics;

/// Where Kafka stored an acknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub partition: i32,
    pub offset: i64,
}

/// Why an event could not be handed to Kafka or was not acknowledged in time.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the producer queue is full")]
    QueueFull,
    #[error("Kafka did not acknowledge the record within {0:?}")]
    TimedOut(Duration),
    #[error("Kafka refused the record: {0}")]
    Kafka(KafkaError),
}

/// One record to publish. The value is the request body, untouched.
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub headers: OwnedHeaders,
}

/// Builds CloudEvents binary-mode headers plus hookrelay's own.
pub fn headers(fields: &[(&str, &[u8])]) -> OwnedHeaders {
    fields.iter().fold(
        OwnedHeaders::new_with_capacity(fields.len()),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(*value),
            })
        },
    )
}

/// What travels with a record to its delivery report.
pub struct Pending {
    source: Arc<SourceMetrics>,
    accepted: Instant,
    reply: Option<oneshot::Sender<Result<Ack, KafkaError>>>,
}

/// Counts delivery outcomes and answers waiting requests; runs on the producer's poll thread.
pub struct DeliveryContext {
    progress: Arc<Progress>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "kafka client error");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<Pending>) {
        let outcome = match result {
            Ok(message) => {
                pending.source.delivered.inc();
                pending
                    .source
                    .delivery_duration
                    .observe(pending.accepted.elapsed().as_secs_f64());
                self.progress.delivered();
                Ok(Ack {
                    partition: message.partition(),
                    offset: message.offset(),
                })
            }
            Err((error, _)) => {
                pending.source.failed.inc();
                if pending.reply.is_none() {
                    tracing::error!(%error, "record lost: Kafka did not acknowledge an event accepted in memory mode");
                }
                Err(error.clone())
            }
        };
        if let Some(reply) = pending.reply {
            // The request may have given up waiting; then nobody needs the answer.
            let _ = reply.send(outcome);
        }
    }
}

fn log_librdkafka(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", facility, message),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, message),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, message)
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, message),
    }
}

/// Delivery progress, for `Retry-After` estimates.
pub struct Progress {
    started: Instant,
    delivered: AtomicU64,
    last_delivery_ms: AtomicU64,
    sample: Mutex<RateSample>,
}

struct RateSample {
    at: Instant,
    delivered: u64,
    rate_per_sec: f64,
}

impl Progress {
    fn new() -> Progress {
        let now = Instant::now();
        Progress {
            started: now,
            delivered: AtomicU64::new(0),
            last_delivery_ms: AtomicU64::new(0),
            sample: Mutex::new(RateSample {
                at: now,
                delivered: 0,
                rate_per_sec: 0.0,
            }),
        }
    }

    fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let now_ms = self.started.elapsed().as_millis() as u64;
        self.last_delivery_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Seconds a sender should wait before retrying, given `backlog` queued records: the time
    /// to drain the backlog at the recent delivery rate, or, when nothing is being delivered,
    /// half the time since the last delivery (a longer outage asks for a longer wait).
    pub fn retry_after_secs(&self, backlog: u64) -> u64 {
        let now = Instant::now();
        let rate = {
            let mut sample = self
                .sample
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let elapsed = now.duration_since(sample.at);
            if elapsed >= Duration::from_secs(1) {
                let delivered = self.delivered.load(Ordering::Relaxed);
                sample.rate_per_sec = (delivered - sample.delivered) as f64 / elapsed.as_secs_f64();
                sample.at = now;
                sample.delivered = delivered;
            }
            sample.rate_per_sec
        };
        let since_delivery_ms = (self.started.elapsed().as_millis() as u64)
            .saturating_sub(self.last_delivery_ms.load(Ordering::Relaxed));
        let secs = if rate >= 1.0 {
            (backlog as f64 / rate).ceil() as u64
        } else {
            since_delivery_ms / 2000
        };
        secs.clamp(1, 300)
    }
}

/// The relay's producer.
pub struct Publisher {
    producer: ThreadedProducer<DeliveryContext>,
    client_config: ClientConfig,
    progress: Arc<Progress>,
}

impl Publisher {
    pub fn new(config: &Config) -> Result<Publisher, KafkaError> {
        let client_config = client_config(config);
        let progress = Arc::new(Progress::new());
        let producer = client_config.create_with_context(DeliveryContext {
            progress: progress.clone(),
        })?;
        Ok(Publisher {
            producer,
            client_config,
            progress,
        })
    }

    /// `memory` mode: enqueue and return; the delivery report only moves metrics.
    pub fn enqueue(
        &self,
        record: Record<'_>,
        source: &Arc<SourceMetrics>,
    ) -> Result<(), PublishError> {
        self.send(record, source, None)
    }

    /// `broker` mode: enqueue and wait for Kafka's acknowledgement, at most `timeout`.
    pub async fn deliver(
        &self,
        record: Record<'_>,
        source: &Arc<SourceMetrics>,
        timeout: Duration,
    ) -> Result<Ack, PublishError> {
        let (reply, acknowledged) = oneshot::channel();
        self.send(record, source, Some(reply))?;
        match tokio::time::timeout(timeout, acknowledged).await {
            Ok(Ok(Ok(ack))) => Ok(ack),
            Ok(Ok(Err(error))) => Err(PublishError::Kafka(error)),
            // The sender is dropped without a report only if the producer is torn down.
            Ok(Err(_)) => Err(PublishError::Kafka(KafkaError::Canceled)),
            Err(_) => Err(PublishError::TimedOut(timeout)),
        }
    }

    fn send(
        &self,
        record: Record<'_>,
        source: &Arc<SourceMetrics>,
        reply: Option<oneshot::Sender<Result<Ack, KafkaError>>>,
    ) -> Result<(), PublishError> {
        let pending = Box::new(Pending {
            source: source.clone(),
            accepted: Instant::now(),
            reply,
        });
        let base = BaseRecord::with_opaque_to(record.topic, pending)
            .key(record.key)
            .payload(record.value)
            .headers(record.headers);
        self.producer.send(base).map_err(|(error, _)| match error {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => PublishError::QueueFull,
            other => PublishError::Kafka(other),
        })
    }

    /// Records still queued or awaiting acknowledgement.
    pub fn backlog(&self) -> u64 {
        self.producer.in_flight_count().max(0) as u64
    }

    /// Seconds a refused sender should wait (see [`Progress::retry_after_secs`]).
    pub fn retry_after_secs(&self) -> u64 {
        self.progress.retry_after_secs(self.backlog())
    }

    /// Waits until every queued record is acknowledged or `timeout` passes; returns how many
    /// records were still not acknowledged. Blocking.
    pub fn flush(&self, timeout: Duration) -> u64 {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "producer flush did not complete");
        }
        self.backlog()
    }

    /// The names of the cluster's topics. Blocking, at most `timeout`.
    pub fn topic_names(&self, timeout: Duration) -> Result<HashSet<String>, KafkaError> {
        let metadata = self.producer.client().fetch_metadata(None, timeout)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|topic| topic.error().is_none())
            .map(|topic| topic.name().to_owned())
            .collect())
    }

    /// Creates topics with the configured partitions and replication; an already existing topic
    /// is not an error.
    pub async fn create_topics(
        &self,
        names: &[String],
        partitions: i32,
        replication: i32,
        timeout: Duration,
    ) -> Result<(), String> {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config
            .create()
            .map_err(|error| format!("cannot create a Kafka admin client: {error}"))?;
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(replication)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(timeout));
        let results = admin
            .create_topics(&topics, &options)
            .await
            .map_err(|error| format!("topic creation failed: {error}"))?;
        let failures: Vec<String> = results
            .into_iter()
            .filter_map(|result| match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                Err((name, code)) => Some(format!("{name}: {code}")),
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(format!("topic creation failed: {}", failures.join(", ")))
        }
    }
}

/// hookrelay's producer settings, then `[kafka.options]` on top.
pub fn client_config(config: &Config) -> ClientConfig {
    let mut client_config = ClientConfig::new();
    client_config
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("client.id", &config.kafka.client_id)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        // Bounds the memory of the producer queue (librdkafka's default is 1 GiB).
        .set("queue.buffering.max.kbytes", "32768")
        .set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in &config.kafka.options {
        client_config.set(key, value);
    }
    client_config
}
