//! The Kafka producer: created, used, flushed and closed here and nowhere else.
//!
//! librdkafka keeps its own queue of records: `send` only enqueues (it fails at once with
//! `QueueFull` when `queue.buffering.max.*` is reached), a background thread sends batches, and
//! each record's outcome arrives later as a *delivery report*. A record is reported failed only
//! after `message.timeout.ms`; until then librdkafka retries it itself, and with
//! `enable.idempotence` those retries cannot duplicate or reorder it.
//!
//! hookrelay uses a [`ThreadedProducer`] whose delivery callback ([`DeliveryContext`]) counts the
//! outcome and tells whoever waits for it ([`Notify`]): in `broker` ack mode the one request
//! waiting through a oneshot channel, otherwise a [`ReportSink`] by token (the spool forwarder,
//! which knows what its tokens mean; the producer knows nothing of the spool). That costs far
//! less per record than awaiting a `FutureProducer` future per request, and `memory` mode pays
//! nothing beyond the enqueue.
//!
//! Dropping a producer purges its queue, so [`Publisher::flush`] must run before shutdown ends.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::Message;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::metrics::{KafkaMetrics, SourceMetrics};
use crate::retry::DrainRate;
use crate::telemetry::Throttle;

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
    #[error("the producer was fenced or failed and is being replaced")]
    Replacing,
}

/// Why topics could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("cannot create a Kafka admin client: {0}")]
    Client(#[source] KafkaError),
    #[error("topic creation failed: {0}")]
    Request(#[source] KafkaError),
    #[error("topic creation failed: {}", refusals(.0))]
    Refused(Vec<(String, RDKafkaErrorCode)>),
}

fn refusals(refused: &[(String, RDKafkaErrorCode)]) -> String {
    refused
        .iter()
        .map(|(name, code)| format!("{name}: {code}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One record to publish. The value is the request body, untouched.
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub headers: OwnedHeaders,
}

/// Why Kafka did not take a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It may take it later (broker down, leader moving, timeout): send it again.
    Retriable,
    /// It never will (too large, topic gone, not authorized, invalid): the reason, a bounded
    /// label of `hookrelay_dead_letters_total`.
    Permanent(&'static str),
}

impl Refusal {
    /// Sorts a librdkafka error, as Vector's Kafka sink lists the non-retriable ones. Anything
    /// not listed is retried: a wrong "permanent" would move a good record to the dead letters,
    /// a wrong "retriable" only delays.
    pub fn of(error: &KafkaError) -> Refusal {
        use RDKafkaErrorCode as Code;
        let Some(code) = error.rdkafka_error_code() else {
            return Refusal::Retriable;
        };
        Refusal::Permanent(match code {
            Code::MessageSizeTooLarge | Code::InvalidMessageSize | Code::MessageBatchTooLarge => {
                "record_too_large"
            }
            Code::TopicAuthorizationFailed | Code::ClusterAuthorizationFailed => "not_authorized",
            Code::UnknownTopic | Code::UnknownPartition | Code::InvalidTopic => "unknown_topic",
            Code::InvalidMessage
            | Code::InvalidRecord
            | Code::InvalidTimestamp
            | Code::UnsupportedForMessageFormat
            | Code::PolicyViolation => "invalid_record",
            _ => return Refusal::Retriable,
        })
    }
}

/// A record's headers ([`crate::record`]) as the producer takes them.
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

/// How often the repairer looks for a fatal producer error nothing woke it for.
const REPAIR_CHECK: Duration = Duration::from_secs(1);

/// The thread started by [`Publisher::start_repairer`].
pub struct Repairer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Repairer {
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Runs once Kafka acknowledged a `memory`-mode record (remembers its id for deduplication).
pub type OnDelivered = Box<dyn FnOnce() + Send + Sync>;

/// Receives delivery reports by token: whoever sends a record with
/// [`Publisher::send_reported`] learns its outcome here, on the producer's poll thread (so it
/// must only hand the report on).
pub trait ReportSink: Send + Sync {
    fn report(&self, token: u64, outcome: Result<Ack, &KafkaError>);
}

/// Who learns of a record's delivery report.
pub enum Notify {
    /// `memory` mode: the report moves metrics, and a success runs the callback, if any.
    Memory(Option<OnDelivered>),
    /// The request waiting for Kafka's acknowledgement (`broker` mode).
    Request(oneshot::Sender<Result<Ack, KafkaError>>),
    /// A [`ReportSink`], with the sender's token (the spool forwarder, by sequence number).
    Report {
        token: u64,
        sink: Arc<dyn ReportSink>,
    },
}

/// What travels with a record to its delivery report.
pub struct Pending {
    source: Option<Arc<SourceMetrics>>,
    accepted: Instant,
    notify: Notify,
}

/// Counts delivery outcomes and answers waiting requests; runs on the producer's poll thread.
pub struct DeliveryContext {
    /// What every producer of the publisher shares.
    state: ProducerState,
    /// One delivery-failure line every 10 s at most (the count of the others goes with it).
    failures_logged: Throttle,
    /// Which producer this context belongs to (see [`ProducerState::current`]).
    generation: u64,
}

/// What the publisher and the context of each of its producers share.
#[derive(Clone)]
struct ProducerState {
    metrics: KafkaMetrics,
    /// Set when the producer reports an error it cannot recover from by itself.
    broken: Arc<AtomicBool>,
    /// The thread that replaces a broken producer, woken as soon as it breaks.
    repairer: Arc<OnceLock<std::thread::Thread>>,
    /// `memory`-mode records the broken producer could not send.
    requeue: RequeueQueue,
    /// Which producer is current: reports of a replaced producer (failing as it is torn down)
    /// must not mark its successor broken.
    current: Arc<AtomicU64>,
    progress: Arc<DrainRate>,
    unacknowledged_memory: Arc<AtomicU64>,
    /// What the producers' clients reported going wrong.
    trouble: Arc<ClientTrouble>,
}

impl ProducerState {
    /// The delivery context of producer `generation`.
    fn context(&self, generation: u64) -> DeliveryContext {
        DeliveryContext {
            state: self.clone(),
            failures_logged: Throttle::new(Duration::from_secs(10)),
            generation,
        }
    }
}

impl DeliveryContext {
    /// Refuses new records until the producer is replaced, and wakes the thread that replaces it.
    fn mark_broken(&self) {
        if self.generation != self.state.current.load(Ordering::Acquire) {
            return;
        }
        if !self.state.broken.swap(true, Ordering::AcqRel) {
            if let Some(repairer) = self.state.repairer.get() {
                repairer.unpark();
            }
        }
    }
}

/// A `memory`-mode record a broken producer gave back, to send with its replacement.
struct Requeued {
    topic: String,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    source: Option<Arc<SourceMetrics>>,
    on_delivered: Option<OnDelivered>,
}

impl Requeued {
    fn copy(
        message: &rdkafka::message::BorrowedMessage<'_>,
        source: Option<Arc<SourceMetrics>>,
        on_delivered: Option<OnDelivered>,
    ) -> Requeued {
        Requeued {
            topic: message.topic().to_owned(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().unwrap_or_default().to_vec(),
            headers: owned_headers(message),
            source,
            on_delivered,
        }
    }
}

/// A Kafka message's headers, copied.
pub fn owned_headers(message: &impl Message) -> Vec<(String, Vec<u8>)> {
    use rdkafka::message::Headers;
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| {
                    (
                        header.key.to_owned(),
                        header.value.unwrap_or_default().to_vec(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Records given back by broken producers, shared by every producer the publisher creates.
type RequeueQueue = Arc<Mutex<Vec<Requeued>>>;

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if matches!(
            level,
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug
        ) {
            return log_librdkafka(level, facility, message, 0);
        }
        self.state.trouble.remember(message);
        if let Some(repeats) = self.state.trouble.allow(message) {
            log_librdkafka(level, facility, message, repeats);
        }
    }

    fn stats(&self, statistics: Statistics) {
        let kafka = &self.state.metrics;
        kafka.queue_messages.set(statistics.msg_cnt as i64);
        kafka.queue_bytes.set(statistics.msg_size as i64);
        for broker in statistics
            .brokers
            .values()
            .filter(|broker| broker.nodeid >= 0)
        {
            let name = broker.nodename.as_str();
            kafka
                .broker_up
                .with_label_values(&[name])
                .set(i64::from(broker.state == "UP"));
            if let Some(rtt) = &broker.rtt {
                kafka
                    .broker_rtt_seconds
                    .with_label_values(&[name])
                    .set(rtt.avg as f64 / 1e6);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            // A broker connection that failed was just logged by librdkafka itself (facility
            // FAIL, with its cause): once is enough.
            Some(RDKafkaErrorCode::BrokerTransportFailure) => {
                tracing::debug!(target: "librdkafka", %error, reason, "kafka client error");
            }
            // It follows the lines that named the cause (each broker's failure), which
            // readiness goes on naming.
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                tracing::debug!(target: "librdkafka", %error, reason, "kafka client error");
            }
            _ => {
                self.state.trouble.remember(reason);
                // Often the very message librdkafka just logged (credentials refused, a
                // certificate not trusted): then it is a repeat of that cause.
                if let Some(repeats) = self.state.trouble.allow(reason) {
                    tracing::warn!(target: "librdkafka", %error, reason, repeats, "kafka client error");
                }
            }
        }
    }
}

/// What the Kafka clients report going wrong (a broker away, credentials refused, a certificate
/// not trusted), said once per cause: librdkafka repeats a failure at every reconnection (up to
/// every `reconnect.backoff.max.ms`, for as long as it lasts), and the relay logs the first line
/// of a cause, then at most one a minute with the count of the repeats held back. The latest
/// one since Kafka last answered is kept for readiness to name.
#[derive(Default)]
pub struct ClientTrouble {
    /// A cause ([`cause_of`]) and when its line was last written, with the repeats since.
    said: Mutex<HashMap<String, (Instant, u64)>>,
    latest: Mutex<Option<String>>,
}

/// How long the repeats of one cause are held back.
const TROUBLE_REPEAT_AFTER: Duration = Duration::from_secs(60);
/// Causes remembered at most (librdkafka's messages name brokers: a bound on strange clusters).
const TROUBLE_CAUSES: usize = 256;

impl ClientTrouble {
    /// `Some(repeats held back)` when a line for `message` may be written now.
    fn allow(&self, message: &str) -> Option<u64> {
        let cause = cause_of(message);
        let mut said = self
            .said
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let now = Instant::now();
        match said.get_mut(&cause) {
            Some((at, held)) if now.duration_since(*at) < TROUBLE_REPEAT_AFTER => {
                *held += 1;
                None
            }
            Some(entry) => Some(std::mem::replace(entry, (now, 0)).1),
            None => {
                if said.len() >= TROUBLE_CAUSES {
                    said.clear();
                }
                said.insert(cause, (now, 0));
                Some(0)
            }
        }
    }

    fn remember(&self, message: &str) {
        *self
            .latest
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(message.to_owned());
    }

    /// The latest problem since Kafka last answered.
    pub fn latest(&self) -> Option<String> {
        self.latest
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Kafka answered: what went wrong before is no reason any more.
    pub fn clear(&self) {
        *self
            .latest
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = None;
    }
}

/// A message without what changes between two reports of one cause: the reporting thread
/// (`[thrd:...]: `), the broker it names, numbers (ports, node ids, durations, counts) and
/// librdkafka's "(after N ms in state X ...)" suffix.
fn cause_of(message: &str) -> String {
    let message = match message.strip_prefix("[thrd:") {
        Some(rest) => rest.split_once("]: ").map_or(message, |(_, rest)| rest),
        None => message,
    };
    // librdkafka names the broker first ("sasl_ssl://kafka-1:9094/1: ..."): one cause on
    // several brokers, or on a broker and its bootstrap alias, is one cause.
    let message = match message.split_once(": ") {
        Some((broker, rest)) if broker.contains('/') && !broker.contains(' ') => rest,
        _ => message,
    };
    let message = message.split(" (after ").next().unwrap_or(message);
    message.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// The metadata client's context: what it meets (a broker away) the producer meets too and
/// logs, and the metadata watcher reports as the relay's readiness; its own lines are debug.
pub struct MetadataContext;

impl ClientContext for MetadataContext {
    fn log(&self, _: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(target: "librdkafka", facility, message, "metadata client");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason, "metadata client error");
    }
}

impl ProducerContext for MetadataContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<Pending>) {
        // A `memory`-mode record the producer could not send because it is broken (fenced,
        // fatal) is not refused by Kafka: it is sent again by the producer that replaces it.
        let pending = match (result, pending.notify) {
            (Err((error, message)), Notify::Memory(on_delivered))
                if is_unrecoverable(error) || is_purged(error) =>
            {
                if is_unrecoverable(error) {
                    self.mark_broken();
                }
                self.state
                    .requeue
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .push(Requeued::copy(message, pending.source, on_delivered));
                return;
            }
            (_, notify) => Box::new(Pending { notify, ..*pending }),
        };
        let outcome = match result {
            Ok(message) => {
                if let Some(source) = &pending.source {
                    source.delivered.inc();
                    source
                        .delivery_duration
                        .observe(pending.accepted.elapsed().as_secs_f64());
                }
                self.state.progress.delivered(1);
                Ok(Ack {
                    partition: message.partition(),
                    offset: message.offset(),
                })
            }
            Err((error, _)) => {
                if let Some(source) = &pending.source {
                    source.failed.inc();
                }
                if is_unrecoverable(error) {
                    self.mark_broken();
                }
                // A record refused for good is not sent again: the forwarder's dead-letter
                // line says where it went.
                let permanent = matches!(Refusal::of(error), Refusal::Permanent(_));
                let report = matches!(pending.notify, Notify::Report { .. });
                if permanent && report {
                } else if let Some(suppressed) = self.failures_logged.allow() {
                    match pending.notify {
                        Notify::Memory(_) => {
                            tracing::error!(%error, suppressed, "record lost: Kafka did not acknowledge an event accepted in memory mode")
                        }
                        Notify::Report { .. } => {
                            tracing::warn!(%error, suppressed, "Kafka did not acknowledge a record; it will be sent again")
                        }
                        Notify::Request(_) => {
                            tracing::warn!(%error, suppressed, "Kafka did not acknowledge a record; the sender got 503")
                        }
                    }
                }
                Err(error.clone())
            }
        };
        match pending.notify {
            Notify::Memory(on_delivered) => {
                self.state
                    .unacknowledged_memory
                    .fetch_sub(1, Ordering::Relaxed);
                if let (Ok(_), Some(on_delivered)) = (&outcome, on_delivered) {
                    on_delivered();
                }
            }
            // The request may have given up waiting; then nobody needs the answer.
            Notify::Request(reply) => {
                let _ = reply.send(outcome);
            }
            Notify::Report { token, sink } => sink.report(token, outcome.as_ref().copied()),
        }
    }
}

fn log_librdkafka(level: RDKafkaLogLevel, facility: &str, message: &str, repeats: u64) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, message, repeats)
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", facility, message, repeats)
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, message)
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, message),
    }
}

/// The relay's producer.
pub struct Publisher {
    /// Replaced by [`Publisher::reset_if_broken`] when librdkafka cannot recover by itself.
    producer: RwLock<ThreadedProducer<DeliveryContext>>,
    /// A client for cluster metadata only (it never sends a record). Threaded: its events (broker
    /// errors while Kafka is away) are served by its own poll thread, not left to pile up.
    metadata: ThreadedProducer<MetadataContext>,
    client_config: ClientConfig,
    state: ProducerState,
    /// No request waits for the producer (every source acknowledges at the spool): its threads,
    /// and those of its replacements, run at background priority ([`crate::priority`]).
    background: bool,
}

/// Records a producer being torn down (replaced) gave back unsent.
fn is_purged(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
    )
}

/// Errors after which the idempotent producer never delivers again (the broker fenced its
/// producer id, or librdkafka raised a fatal error): only a new producer can.
fn is_unrecoverable(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    )
}

impl Publisher {
    pub fn new(config: &Config, metrics: KafkaMetrics) -> Result<Publisher, KafkaError> {
        let client_config = client_config(&config.kafka);
        let state = ProducerState {
            metrics,
            broken: Arc::new(AtomicBool::new(false)),
            repairer: Arc::new(OnceLock::new()),
            requeue: RequeueQueue::default(),
            current: Arc::new(AtomicU64::new(0)),
            progress: Arc::new(DrainRate::new()),
            unacknowledged_memory: Arc::new(AtomicU64::new(0)),
            trouble: Arc::new(ClientTrouble::default()),
        };
        let background = config.only_spool();
        let create = || client_config.create_with_context(state.context(0));
        let producer = if background {
            crate::priority::create_in_background(create)?
        } else {
            create()?
        };
        let metadata = client_config
            .clone()
            .set("enable.idempotence", "false")
            .set("statistics.interval.ms", "0")
            .create_with_context(MetadataContext)?;
        Ok(Publisher {
            producer: RwLock::new(producer),
            metadata,
            client_config,
            state,
            background,
        })
    }

    /// Starts the thread that replaces a broken producer ([`Publisher::reset_if_broken`]): woken
    /// as soon as a delivery report shows the producer fenced or failed, so that records are
    /// refused (503) only for a moment, and looking every second for a fatal error librdkafka
    /// raised otherwise. The decision to replace the producer is taken here and nowhere else.
    pub fn start_repairer(self: &Arc<Self>) -> std::io::Result<Repairer> {
        let stop = Arc::new(AtomicBool::new(false));
        let publisher = Arc::downgrade(self);
        let background = self.background;
        let thread = std::thread::Builder::new()
            .name("kafka-repair".to_owned())
            .spawn({
                let stop = stop.clone();
                move || {
                    if background {
                        // The producers it creates inherit its priority.
                        crate::priority::lower_current_thread();
                    }
                    while !stop.load(Ordering::Acquire) {
                        let Some(publisher) = publisher.upgrade() else {
                            return;
                        };
                        publisher.reset_if_broken();
                        drop(publisher);
                        std::thread::park_timeout(REPAIR_CHECK);
                    }
                }
            })?;
        let _ = self.state.repairer.set(thread.thread().clone());
        Ok(Repairer {
            stop,
            thread: Some(thread),
        })
    }

    fn producer(&self) -> std::sync::RwLockReadGuard<'_, ThreadedProducer<DeliveryContext>> {
        self.producer
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Replaces the producer when it can no longer deliver (fenced or fatal). Records still in
    /// the old producer are reported failed: spooled ones are sent again by the forwarder.
    /// Returns whether it replaced the producer. Called by the repairer thread.
    fn reset_if_broken(&self) -> bool {
        let replaced = self.replace_if_broken();
        self.send_requeued();
        replaced
    }

    fn replace_if_broken(&self) -> bool {
        let fatal = self.producer().client().fatal_error();
        if !self.state.broken.load(Ordering::Acquire) && fatal.is_none() {
            return false;
        }
        // Records are refused (503) while `broken` is set, until the new producer is in place.
        self.state.broken.store(true, Ordering::Release);
        let generation = self.state.current.load(Ordering::Acquire) + 1;
        let fresh = match self
            .client_config
            .create_with_context(self.state.context(generation))
        {
            Ok(fresh) => fresh,
            Err(error) => {
                tracing::error!(%error, "cannot create a new Kafka producer");
                return false;
            }
        };
        let old = std::mem::replace(
            &mut *self
                .producer
                .write()
                .unwrap_or_else(|poison| poison.into_inner()),
            fresh,
        );
        self.state.current.store(generation, Ordering::Release);
        self.state.broken.store(false, Ordering::Release);
        tracing::warn!(?fatal, "the Kafka producer could not recover (fenced or fatal error); replaced it with a new one");
        drop(old);
        true
    }

    /// Sends the `memory`-mode records a broken producer gave back with the current one; what it
    /// cannot take now (full queue, broken again) waits for the next call.
    fn send_requeued(&self) {
        let mut requeued = std::mem::take(
            &mut *self
                .state
                .requeue
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        )
        .into_iter();
        while let Some(mut record) = requeued.next() {
            let pending = Box::new(Pending {
                source: record.source.clone(),
                accepted: Instant::now(),
                notify: Notify::Memory(record.on_delivered.take()),
            });
            let headers: Vec<(&str, &[u8])> = record
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_slice()))
                .collect();
            let sent = self.try_send(
                Record {
                    topic: &record.topic,
                    key: record.key.as_deref().unwrap_or_default(),
                    value: &record.value,
                    headers: self::headers(&headers),
                },
                pending,
            );
            match sent {
                Ok(()) => {}
                Err((PublishError::QueueFull | PublishError::Replacing, pending)) => {
                    // Not now: it and the rest wait for the next call, callback included.
                    if let Notify::Memory(on_delivered) = pending.notify {
                        record.on_delivered = on_delivered;
                    }
                    let mut queue = self
                        .state
                        .requeue
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner());
                    queue.push(record);
                    queue.extend(requeued);
                    return;
                }
                Err((error, _)) => {
                    self.state
                        .unacknowledged_memory
                        .fetch_sub(1, Ordering::Relaxed);
                    if let Some(source) = &record.source {
                        source.failed.inc();
                    }
                    tracing::error!(%error, "record lost: a memory-mode event could not be sent again after the producer was replaced");
                }
            }
        }
    }

    /// `memory` mode: enqueue and return; the delivery report moves metrics and, when Kafka
    /// acknowledged the record, runs `on_delivered`.
    pub fn enqueue(
        &self,
        record: Record<'_>,
        source: &Arc<SourceMetrics>,
        on_delivered: Option<OnDelivered>,
    ) -> Result<(), PublishError> {
        self.state
            .unacknowledged_memory
            .fetch_add(1, Ordering::Relaxed);
        self.send(record, Some(source.clone()), Notify::Memory(on_delivered))
            .inspect_err(|_| {
                self.state
                    .unacknowledged_memory
                    .fetch_sub(1, Ordering::Relaxed);
            })
    }

    /// Publishes a record whose report goes to `sink` with `token` (the spool forwarder's
    /// records). `accepted` is when the event was received: the delivery latency metric counts
    /// from it, not from this send.
    pub fn send_reported(
        &self,
        record: Record<'_>,
        source: Option<Arc<SourceMetrics>>,
        accepted: Instant,
        token: u64,
        sink: Arc<dyn ReportSink>,
    ) -> Result<(), PublishError> {
        self.send_at(record, source, Notify::Report { token, sink }, accepted)
    }

    /// `memory`-mode records not yet acknowledged by Kafka.
    pub fn unacknowledged_memory(&self) -> u64 {
        self.state.unacknowledged_memory.load(Ordering::Relaxed)
    }

    /// `broker` mode: enqueue and wait for Kafka's acknowledgement, at most `timeout`.
    pub async fn deliver(
        &self,
        record: Record<'_>,
        source: &Arc<SourceMetrics>,
        timeout: Duration,
    ) -> Result<Ack, PublishError> {
        let (reply, acknowledged) = oneshot::channel();
        self.send(record, Some(source.clone()), Notify::Request(reply))?;
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
        source: Option<Arc<SourceMetrics>>,
        notify: Notify,
    ) -> Result<(), PublishError> {
        self.send_at(record, source, notify, Instant::now())
    }

    fn send_at(
        &self,
        record: Record<'_>,
        source: Option<Arc<SourceMetrics>>,
        notify: Notify,
        accepted: Instant,
    ) -> Result<(), PublishError> {
        let pending = Box::new(Pending {
            source,
            accepted,
            notify,
        });
        self.try_send(record, pending).map_err(|(error, _)| error)
    }

    /// Hands a record to the producer; a refusal gives back what travels with it.
    fn try_send(
        &self,
        record: Record<'_>,
        pending: Box<Pending>,
    ) -> Result<(), (PublishError, Box<Pending>)> {
        // A fenced or failed producer drops what it is given: refuse until it is replaced.
        if self.state.broken.load(Ordering::Acquire) {
            return Err((PublishError::Replacing, pending));
        }
        let base = BaseRecord::with_opaque_to(record.topic, pending)
            .key(record.key)
            .payload(record.value)
            .headers(record.headers);
        self.producer().send(base).map_err(|(error, base)| {
            let error = match error {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                    PublishError::QueueFull
                }
                other => PublishError::Kafka(other),
            };
            (error, base.delivery_opaque)
        })
    }

    /// Records still queued or awaiting acknowledgement.
    pub fn backlog(&self) -> u64 {
        self.producer().in_flight_count().max(0) as u64
    }

    /// Seconds a refused sender should wait (see [`DrainRate::retry_after_secs`]).
    pub fn retry_after_secs(&self) -> u64 {
        self.state.progress.retry_after_secs(self.backlog())
    }

    /// Waits until every queued record is acknowledged or `timeout` passes; returns how many
    /// `memory`-mode records were still not acknowledged (spooled ones stay in the spool).
    /// Blocking.
    pub fn flush(&self, timeout: Duration) -> u64 {
        if let Err(error) = self.producer().flush(timeout) {
            tracing::warn!(%error, "producer flush did not complete");
        }
        self.unacknowledged_memory()
    }

    /// The names of the cluster's topics. Blocking, at most `timeout`.
    /// The latest problem the producer's client reported since Kafka last answered: the likely
    /// reason it does not answer now (credentials refused, a certificate not trusted).
    pub fn recent_trouble(&self) -> Option<String> {
        self.state.trouble.latest()
    }

    /// Kafka answered a metadata request.
    pub fn clear_trouble(&self) {
        self.state.trouble.clear();
    }

    pub fn topic_names(&self, timeout: Duration) -> Result<HashSet<String>, KafkaError> {
        // Its own client: a metadata request may take the whole timeout, and holding the
        // producer's lock that long would keep a broken producer from being replaced.
        let metadata = self.metadata.client().fetch_metadata(None, timeout)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|topic| topic.error().is_none())
            .map(|topic| topic.name().to_owned())
            .collect())
    }

    /// The topics' `max.message.bytes` where the cluster tells it (a topic without its own value
    /// is left out; so is everything when the cluster does not answer DescribeConfigs). Blocking,
    /// at most `timeout`.
    pub fn topic_message_limits(
        &self,
        topics: &[String],
        timeout: Duration,
    ) -> Result<HashMap<String, usize>, String> {
        use rdkafka::admin::{OwnedResourceSpecifier, ResourceSpecifier};
        let admin: AdminClient<DefaultClientContext> = self
            .client_config
            .create()
            .map_err(|error| format!("cannot create a Kafka admin client: {error}"))?;
        let specifiers: Vec<ResourceSpecifier<'_>> = topics
            .iter()
            .map(|topic| ResourceSpecifier::Topic(topic))
            .collect();
        let options = AdminOptions::new().request_timeout(Some(timeout));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())?;
        let results = runtime
            .block_on(admin.describe_configs(&specifiers, &options))
            .map_err(|error| format!("cannot describe the topics' configuration: {error}"))?;
        Ok(results
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|resource| {
                let OwnedResourceSpecifier::Topic(topic) = &resource.specifier else {
                    return None;
                };
                let limit = resource
                    .get("max.message.bytes")?
                    .value
                    .as_deref()?
                    .parse()
                    .ok()?;
                Some((topic.clone(), limit))
            })
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
    ) -> Result<(), TopicError> {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config.create().map_err(TopicError::Client)?;
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(replication)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(timeout));
        let results = admin
            .create_topics(&topics, &options)
            .await
            .map_err(TopicError::Request)?;
        let refused: Vec<(String, RDKafkaErrorCode)> = results
            .into_iter()
            .filter_map(|result| match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                Err(refusal) => Some(refusal),
            })
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(TopicError::Refused(refused))
        }
    }
}

/// hookrelay's producer settings, then `[kafka.options]` on top.
pub fn client_config(kafka: &crate::config::KafkaSettings) -> ClientConfig {
    let mut client_config = ClientConfig::new();
    client_config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", &kafka.client_id)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        // Bounds the memory of the producer queue (librdkafka's default is 1 GiB).
        .set("queue.buffering.max.kbytes", "32768")
        // Feeds the producer queue and broker metrics.
        .set("statistics.interval.ms", "5000")
        .set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in &kafka.options {
        client_config.set(key, value);
    }
    client_config
}

/// Publishes one record with a producer of its own and waits for Kafka's acknowledgement (for
/// tools: `hookrelay spool dead retry`). Blocking.
pub fn publish_once(
    kafka: &crate::config::KafkaSettings,
    record: Record<'_>,
    timeout: Duration,
) -> Result<Ack, OnceError> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = client_config(kafka)
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .create()
        .map_err(OnceError::Client)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(OnceError::Runtime)?;
    let sent = producer.send(
        FutureRecord::to(record.topic)
            .key(record.key)
            .payload(record.value)
            .headers(record.headers),
        timeout,
    );
    match runtime.block_on(sent) {
        Ok(delivery) => Ok(Ack {
            partition: delivery.partition,
            offset: delivery.offset,
        }),
        Err((error, _)) => Err(OnceError::Kafka(error)),
    }
}

/// Why [`publish_once`] could not publish.
#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    #[error("cannot create a Kafka producer: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot start a runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("{0}")]
    Kafka(#[source] KafkaError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_the_same_whichever_broker_thread_or_timing_reports_it() {
        let logged = "[thrd:sasl_ssl://kafka-1:9094/1]: sasl_ssl://kafka-1:9094/1: SASL authentication error: Authentication failed (after 348ms in state AUTH_REQ)";
        let reported = "sasl_ssl://kafka-2:9094/2: SASL authentication error: Authentication failed (after 12ms in state AUTH_REQ, 1 identical error(s) suppressed)";
        assert_eq!(cause_of(logged), cause_of(reported));
        assert_ne!(
            cause_of(reported),
            cause_of("kafka-2:9094/2: Connect to ipv4#10.0.0.2:9094 failed: Connection refused")
        );
        assert_eq!(
            cause_of("sasl_ssl://kafka-a.example:9094/bootstrap: SSL handshake failed"),
            cause_of("sasl_ssl://kafka-b.example:9094/2: SSL handshake failed"),
            "the same cause on brokers named by letters, or a bootstrap alias"
        );
    }

    #[test]
    fn a_cause_is_said_once_then_repeats_are_held_back() {
        let trouble = ClientTrouble::default();
        let message = "kafka-1:9092/1: Connect to ipv4#10.0.0.1:9092 failed: Connection refused";
        assert_eq!(trouble.allow(message), Some(0));
        assert_eq!(trouble.allow(message), None);
        assert_eq!(
            trouble
                .allow("kafka-c:9092/3: Connect to ipv4#10.0.0.3:9092 failed: Connection refused"),
            None,
            "the same cause on another broker"
        );
        assert_eq!(
            trouble.allow("SSL handshake failed"),
            Some(0),
            "another cause"
        );
        trouble.remember(message);
        assert_eq!(trouble.latest().as_deref(), Some(message));
        trouble.clear();
        assert_eq!(trouble.latest(), None);
    }
}
