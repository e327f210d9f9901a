//! Which Kafka topics exist, kept current by a watcher thread.
//!
//! Kafka does not tell a producer synchronously that a topic is missing: a record for one sits in
//! the queue until `message.timeout.ms` and is then lost. So the relay checks at start that every
//! topic its configuration can publish to exists (or creates them with `kafka.create_topics`),
//! and for sources whose topic depends on an unlisted event type it accepts an event only when
//! its topic is known to exist.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::health::{Health, KafkaState};
use crate::publisher::Publisher;

/// How often the watcher refreshes metadata while everything is fine, and while it is not.
const REFRESH_HEALTHY: Duration = Duration::from_secs(10);
const REFRESH_UNHEALTHY: Duration = Duration::from_secs(1);
/// How often the required topics' `max.message.bytes` are read again.
const LIMITS_EVERY: Duration = Duration::from_secs(60);
/// What a record batch adds to its one record: a batch of one must fit the topic's
/// `max.message.bytes`.
const BATCH_OVERHEAD: usize = 61;

pub struct Topics {
    /// Topics the configuration names; all must exist for the relay to be ready.
    required: RwLock<Vec<String>>,
    known: RwLock<HashSet<String>>,
    /// The largest record each topic takes, where the cluster told its `max.message.bytes`.
    limits: ArcSwap<HashMap<String, usize>>,
}

impl Topics {
    pub fn new(required: Vec<String>) -> Topics {
        Topics {
            required: RwLock::new(required),
            known: RwLock::new(HashSet::new()),
            limits: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// The largest record `topic` takes, when the cluster told it.
    pub fn record_limit(&self, topic: &str) -> Option<usize> {
        self.limits.load().get(topic).copied()
    }

    /// Reads the required topics' `max.message.bytes` (kept as they were when the cluster
    /// does not answer).
    pub fn refresh_limits(&self, publisher: &Publisher, timeout: Duration) {
        match publisher.topic_message_limits(&self.required(), timeout) {
            Ok(limits) => {
                let limits = limits
                    .into_iter()
                    .map(|(topic, limit)| (topic, limit.saturating_sub(BATCH_OVERHEAD)))
                    .collect();
                self.limits.store(Arc::new(limits));
            }
            Err(error) => tracing::debug!(%error, "topic limits unknown"),
        }
    }

    pub fn required(&self) -> Vec<String> {
        self.required
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// After a configuration reload: the topics the new configuration names.
    pub fn set_required(&self, required: Vec<String>) {
        *self
            .required
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = required;
    }

    pub fn exists(&self, topic: &str) -> bool {
        self.known
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .contains(topic)
    }

    pub fn insert(&self, topic: String) {
        self.known
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(topic);
    }

    /// Replaces the known set with fresh metadata and returns the required topics it lacks.
    pub fn refresh(&self, names: HashSet<String>) -> Vec<String> {
        let missing = self
            .required()
            .iter()
            .filter(|topic| !names.contains(*topic))
            .cloned()
            .collect();
        *self
            .known
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = names;
        missing
    }

    /// Fetches metadata once and records the result in `health`.
    pub fn check(&self, publisher: &Publisher, health: &Health, timeout: Duration) -> KafkaState {
        // A request that found one broker frozen (connected, never answering) times out; the
        // next one is likely to go to another (librdkafka spreads requests over the brokers that
        // are up), so one broker's stall does not make the relay unready while the others
        // serve. A request refused at once (no broker up, credentials refused) is not repeated.
        let names = publisher.topic_names(timeout).or_else(|first| {
            if timed_out(&first) {
                publisher.topic_names(timeout).map_err(|_| first)
            } else {
                Err(first)
            }
        });
        let state = match names {
            Ok(names) => {
                publisher.clear_trouble();
                let missing = self.refresh(names);
                if missing.is_empty() {
                    KafkaState::Ok
                } else {
                    KafkaState::MissingTopics(missing)
                }
            }
            Err(error) => KafkaState::NotYetReached(match publisher.recent_trouble() {
                Some(cause) => format!("{error}; the Kafka client reports: {cause}"),
                None => error.to_string(),
            }),
        };
        health.set_kafka(state.clone());
        state
    }
}

/// The background thread that keeps [`Topics`] and Kafka's part of [`Health`] current.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    pub fn spawn(
        topics: Arc<Topics>,
        publisher: Arc<Publisher>,
        health: Arc<Health>,
        timeout: Duration,
    ) -> std::io::Result<Watcher> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("kafka-metadata".to_owned())
            .spawn({
                let stop = stop.clone();
                move || {
                    let mut previous = health.kafka();
                    let mut limits_read: Option<Instant> = None;
                    while !stop.load(Ordering::Acquire) {
                        topics.check(&publisher, &health, timeout);
                        let state = health.kafka();
                        if state == KafkaState::Ok
                            && limits_read.is_none_or(|read| read.elapsed() >= LIMITS_EVERY)
                        {
                            topics.refresh_limits(&publisher, timeout);
                            limits_read = Some(Instant::now());
                        }
                        if !state.same_as(&previous) {
                            match &state {
                                KafkaState::Ok => tracing::info!("Kafka metadata reachable, every topic exists"),
                                other => tracing::warn!(state = ?other, "Kafka is not ready for this relay"),
                            }
                            previous = state.clone();
                        }
                        let wait = if state == KafkaState::Ok {
                            REFRESH_HEALTHY
                        } else {
                            REFRESH_UNHEALTHY
                        };
                        std::thread::park_timeout(wait);
                    }
                }
            })?;
        Ok(Watcher {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// A metadata request that got no answer in time (as from a broker that is frozen), rather than
/// one refused at once (no broker up, credentials refused).
fn timed_out(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(Code::OperationTimedOut | Code::RequestTimedOut)
    )
}
