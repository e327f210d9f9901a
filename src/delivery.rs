//! Taking an accepted event to its source's durability point: the three ack modes in one place.
//!
//! - `spool`: the record is framed and appended to the write-ahead spool; the answer waits for
//!   the group commit's fsync. The forwarder publishes it later.
//! - `broker`: the record is handed to the producer and the answer waits for Kafka's
//!   acknowledgement (acks=all), at most `broker_timeout_ms`.
//! - `memory`: the record is handed to the producer's queue; the answer does not wait.
//!
//! The deduplication window learns an event's id once it is at that point (in `memory` mode, once
//! Kafka acknowledged it, so that a record lost in the queue does not make its repeats
//! "duplicates"). The request path decides whether an event is accepted; this module decides
//! what "accepted" costs.

use std::sync::Arc;
use std::time::Duration;

use crate::idempotency::{Idempotency, Remembered};
use crate::metrics::SourceMetrics;
use crate::publisher::{self, Ack, OnDelivered, PublishError, Publisher, Record};
use crate::record::Outgoing;
use crate::settings::AckMode;
use crate::spool::{codec, Entry, Spool, SpoolError};

/// Why a record could not reach its durability point now; each is a 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("the spool is not open in this process")]
    NoSpool,
    #[error("the spool holds spool_max_bytes")]
    SpoolFull { retry_after: u64 },
    #[error("the spool cannot be written")]
    SpoolFailed,
    #[error("the producer queue is full")]
    QueueFull { retry_after: u64 },
    #[error("Kafka did not take the record")]
    Kafka { retry_after: u64 },
}

/// The parts every ack mode needs.
pub struct Delivery {
    publisher: Arc<Publisher>,
    spool: Option<Spool>,
    idempotency: Arc<Idempotency>,
}

impl Delivery {
    pub fn new(
        publisher: Arc<Publisher>,
        spool: Option<Spool>,
        idempotency: Arc<Idempotency>,
    ) -> Delivery {
        Delivery {
            publisher,
            spool,
            idempotency,
        }
    }

    /// Whether `spool` ack mode can be served (a reload may not add it).
    pub fn has_spool(&self) -> bool {
        self.spool.is_some()
    }

    /// Takes `record` to the durability point of `ack`; `remembered` enters the deduplication
    /// window once it is there. Returns Kafka's acknowledgement in `broker` mode.
    pub async fn commit(
        &self,
        ack: AckMode,
        source: &str,
        metrics: &Arc<SourceMetrics>,
        record: &Outgoing<'_>,
        remembered: Option<Remembered>,
        broker_timeout: Duration,
    ) -> Result<Option<Ack>, Unavailable> {
        match ack {
            AckMode::Spool => self.spool(source, record, remembered).await.map(|()| None),
            AckMode::Memory => self.memory(metrics, record, remembered).map(|()| None),
            AckMode::Broker => self
                .broker(metrics, record, remembered, broker_timeout)
                .await
                .map(Some),
        }
    }

    async fn spool(
        &self,
        source: &str,
        record: &Outgoing<'_>,
        remembered: Option<Remembered>,
    ) -> Result<(), Unavailable> {
        let spool = self.spool.as_ref().ok_or(Unavailable::NoSpool)?;
        let frame = codec::encode(&Entry {
            received: record.received,
            source,
            topic: record.topic,
            key: record.key,
            headers: record.headers,
            value: record.value,
        });
        match spool.append(frame, remembered).await {
            Ok(_seq) => Ok(()),
            Err(SpoolError::Full { retry_after }) => Err(Unavailable::SpoolFull { retry_after }),
            Err(SpoolError::Io { .. } | SpoolError::Closed) => Err(Unavailable::SpoolFailed),
        }
    }

    fn memory(
        &self,
        metrics: &Arc<SourceMetrics>,
        record: &Outgoing<'_>,
        remembered: Option<Remembered>,
    ) -> Result<(), Unavailable> {
        // Remembered once Kafka has it: a record that times out in the queue must not make its
        // repeats "duplicates".
        let on_delivered = remembered.map(|remembered| {
            let idempotency = self.idempotency.clone();
            Box::new(move || idempotency.remember(remembered)) as OnDelivered
        });
        self.publisher
            .enqueue(kafka_record(record), metrics, on_delivered)
            .map_err(|error| self.unavailable(error))
    }

    async fn broker(
        &self,
        metrics: &Arc<SourceMetrics>,
        record: &Outgoing<'_>,
        remembered: Option<Remembered>,
        timeout: Duration,
    ) -> Result<Ack, Unavailable> {
        let ack = self
            .publisher
            .deliver(kafka_record(record), metrics, timeout)
            .await
            .map_err(|error| self.unavailable(error))?;
        if let Some(remembered) = remembered {
            self.idempotency.remember(remembered);
        }
        Ok(ack)
    }

    fn unavailable(&self, error: PublishError) -> Unavailable {
        let retry_after = self.publisher.retry_after_secs();
        match error {
            PublishError::QueueFull => Unavailable::QueueFull { retry_after },
            PublishError::TimedOut(_) | PublishError::Kafka(_) | PublishError::Replacing => {
                Unavailable::Kafka { retry_after }
            }
        }
    }
}

fn kafka_record<'a>(record: &Outgoing<'a>) -> Record<'a> {
    Record {
        topic: record.topic,
        key: record.key,
        value: record.value,
        headers: publisher::headers(record.headers),
    }
}
