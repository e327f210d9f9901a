//! Readiness: whether the relay should be sent webhooks now, and if not, why.
//!
//! The load balancer reads `/readyz`; the ingress reads [`Health::is_ready`] before it commits
//! an event, so that a relay that cannot reach its durability point answers 503 instead of
//! accepting what it cannot deliver.
//!
//! A failing spool disk concerns only the sources that ack on the spool: their appends fail with
//! 503 (and each one tries the disk again), while `broker`- and `memory`-mode sources go on. So
//! the relay is unready for a spool failure only when every source acks on the spool; otherwise
//! `/readyz` stays 200 and names the failure as `degraded`. The spool writer probes the disk in
//! the background while it fails, so readiness returns without traffic and without a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::IntGauge;

/// Kafka as last seen by the metadata watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaState {
    /// Not yet reached since start.
    NotYetReached(String),
    /// Reached before, unreachable now.
    Unreachable(String),
    /// Reachable, but topics the configuration publishes to do not exist.
    MissingTopics(Vec<String>),
    Ok,
}

pub struct Health {
    ready: AtomicBool,
    shutting_down: AtomicBool,
    kafka: Mutex<KafkaState>,
    /// Whether a Kafka outage makes the relay unready (it does when a source acks on the broker).
    outage_blocks: bool,
    /// Whether Kafka not reached since start makes the relay unready: it does unless every
    /// source acks on the spool, which holds events until Kafka is there.
    unreached_blocks: bool,
    /// Whether a failing spool makes the relay unready: it does when every source acks on it.
    spool_blocks: bool,
    gauge: IntGauge,
    /// The spool, when a source acks on it: failing writes make the relay unready.
    spool: OnceLock<Arc<crate::spool::Shared>>,
}

impl KafkaState {
    /// Whether two states say the same to an operator: an outage whose reason's wording moves
    /// (librdkafka's timings, a count) is the same outage.
    pub fn same_as(&self, other: &KafkaState) -> bool {
        use KafkaState::{NotYetReached, Unreachable};
        match (self, other) {
            (NotYetReached(_), NotYetReached(_)) | (Unreachable(_), Unreachable(_)) => true,
            (a, b) => a == b,
        }
    }
}

impl Health {
    pub fn new(
        outage_blocks: bool,
        unreached_blocks: bool,
        spool_blocks: bool,
        gauge: IntGauge,
    ) -> Health {
        let health = Health {
            ready: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            kafka: Mutex::new(KafkaState::NotYetReached(
                "Kafka metadata not fetched yet".to_owned(),
            )),
            outage_blocks,
            unreached_blocks,
            spool_blocks,
            gauge,
            spool: OnceLock::new(),
        };
        health.update();
        health
    }

    /// Fast check for the request path: Kafka as the sources need it, and not shutting down.
    /// (The spool's own state is its appends' answer.)
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn watch_spool(&self, spool: Arc<crate::spool::Shared>) {
        let _ = self.spool.set(spool);
    }

    fn spool_error(&self) -> Option<String> {
        self.spool.get().and_then(|spool| spool.write_error())
    }

    /// Refreshes the readiness gauge (spool failures are seen here, not pushed).
    pub fn refresh_gauge(&self) {
        let spool_down = self.spool_blocks && self.spool_error().is_some();
        self.gauge.set(i64::from(self.is_ready() && !spool_down));
    }

    /// What fails without making the relay unready: a spool failure while some sources do not
    /// ack on the spool.
    /// And Kafka unreachable while the sources wait for it in the spool.
    pub fn degraded(&self) -> Vec<String> {
        let mut degraded = Vec::new();
        match self.spool_error() {
            Some(error) if !self.spool_blocks => degraded.push(format!(
                "spool not writable (sources that ack on the spool answer 503): {error}"
            )),
            _ => {}
        }
        match self.kafka() {
            KafkaState::NotYetReached(reason) if !self.unreached_blocks => degraded.push(format!(
                "Kafka metadata unreachable since start (events wait in the spool): {reason}"
            )),
            KafkaState::Unreachable(reason) if !self.outage_blocks => degraded.push(format!(
                "Kafka metadata unreachable (events wait in the spool): {reason}"
            )),
            _ => {}
        }
        degraded
    }

    pub fn set_kafka(&self, state: KafkaState) {
        let mut kafka = self
            .kafka
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // Once reached, an outage is "unreachable", not "not yet reached".
        let state = match (&*kafka, state) {
            (KafkaState::NotYetReached(_), state) => state,
            (_, KafkaState::NotYetReached(reason)) => KafkaState::Unreachable(reason),
            (_, state) => state,
        };
        *kafka = state;
        drop(kafka);
        self.update();
    }

    pub fn kafka(&self) -> KafkaState {
        self.kafka
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// From the first moment of shutdown the relay is not ready, for good.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.update();
    }

    /// Why the relay is not ready; empty when it is.
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons = self.state_reasons();
        if let Some(error) = self.spool_error().filter(|_| self.spool_blocks) {
            reasons.push(format!("spool not writable: {error}"));
        }
        reasons
    }

    /// The reasons kept in the `ready` flag: shutdown and Kafka (the spool is read when asked).
    fn state_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.shutting_down.load(Ordering::Acquire) {
            reasons.push("shutting down".to_owned());
        }
        match self.kafka() {
            KafkaState::Ok => {}
            KafkaState::NotYetReached(reason) if self.unreached_blocks => {
                reasons.push(format!("Kafka metadata unreachable since start: {reason}"))
            }
            KafkaState::NotYetReached(_) => {}
            KafkaState::Unreachable(reason) if self.outage_blocks => {
                reasons.push(format!("Kafka metadata unreachable: {reason}"))
            }
            KafkaState::Unreachable(_) => {}
            KafkaState::MissingTopics(topics) => {
                reasons.push(format!(
                    "missing Kafka topics (or not visible to this relay's Kafka user: ACL Describe): {}",
                    topics.join(", ")
                ))
            }
        }
        reasons
    }

    fn update(&self) {
        let ready = self.state_reasons().is_empty();
        self.ready.store(ready, Ordering::Release);
        self.refresh_gauge();
    }
}
