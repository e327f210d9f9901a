//! The relay's observable outcomes outside the request path, each one type: what it logs and
//! what it counts live together in its `emit`, so that a log line and its counter can never
//! drift apart. (The request path has its own single place: the ingress's `report`.)

use std::path::Path;

use prometheus::{IntCounter, IntCounterVec};

use crate::telemetry::Throttle;

/// How often the lines of an outcome that can repeat for as long as a fault lasts (records sent
/// again, dead letters) are written at most; each carries the count of those held back.
pub const REPEAT_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Why spooled records were skipped.
pub enum LostCause<'a> {
    /// Intact (its checksum matches) but in a format this binary does not know.
    Undecodable { version: Option<u8> },
    /// A refused record that could no longer be read back.
    Unreadable,
    /// Corrupt or missing records in a segment (a copy of it is kept as `.seg.corrupt`).
    Corrupt { segment: &'a Path },
}

/// Spooled records the forwarder skipped: acknowledged webhooks the storage lost.
pub struct RecordsLost<'a> {
    /// The first and last sequence numbers of the stretch.
    pub from_seq: u64,
    pub to_seq: u64,
    /// How many of them were not yet delivered (those below the checkpoint were).
    pub count: u64,
    pub cause: LostCause<'a>,
}

impl RecordsLost<'_> {
    /// One record, `seq`, lost.
    pub fn one(seq: u64, cause: LostCause<'_>) -> RecordsLost<'_> {
        RecordsLost {
            from_seq: seq,
            to_seq: seq,
            count: 1,
            cause,
        }
    }

    pub fn emit(&self, lost: &IntCounter) {
        let (from_seq, to_seq) = (self.from_seq, self.to_seq);
        match &self.cause {
            LostCause::Undecodable { version } => tracing::error!(
                seq = from_seq,
                version,
                "spool: a record cannot be decoded (written by another version?); skipping it"
            ),
            LostCause::Unreadable => tracing::error!(
                seq = from_seq,
                "spool: a refused record is no longer readable (the disk lost it)"
            ),
            LostCause::Corrupt { segment } => tracing::error!(
                from_seq,
                to_seq,
                segment = %segment.display(),
                "spool: records are corrupt or missing (the disk lost written data); skipping them (a copy of the segment is kept as .seg.corrupt)"
            ),
        }
        lost.inc_by(self.count);
    }
}

/// Spooled records sent to Kafka again after a failed or timed-out delivery.
pub struct RecordsResent {
    pub from_seq: u64,
    pub count: u64,
}

impl RecordsResent {
    /// Counted always; logged as `logged` allows (a short `message.timeout.ms` and a Kafka that
    /// stays away would resend every few seconds).
    pub fn emit(&self, retries: &IntCounter, logged: &Throttle) {
        if let Some(suppressed) = logged.allow() {
            tracing::warn!(
                from_seq = self.from_seq,
                records = self.count,
                suppressed,
                "spool: Kafka did not acknowledge records; sending them again"
            );
        }
        retries.inc_by(self.count);
    }
}

/// Where a dead letter went.
pub enum DeadLetterPlace<'a> {
    /// `delivery.dead_letter_topic`, refused by Kafka for good.
    Topic(&'a str),
    /// The spool's `dead/` directory (the dead-letter topic is absent or refused it too).
    Directory(&'a Path),
    /// The dead-letter topic, refused by the relay itself (`dead_letter_refused`).
    RefusedKept,
}

/// An event that went to the dead letters instead of its topic.
pub struct DeadLettered<'a> {
    /// The spool's sequence number, or the event id for one the relay refused.
    pub seq: Option<u64>,
    pub id: Option<&'a str>,
    pub source: &'a str,
    pub reason: &'a str,
    pub place: DeadLetterPlace<'a>,
}

impl DeadLettered<'_> {
    /// Counted always; the forwarder's lines as `logged` allows (a topic Kafka refuses turns
    /// every one of its events into a dead letter), the ingress's (one per refused request,
    /// beside its request line) always.
    pub fn emit(&self, total: &IntCounterVec, logged: Option<&Throttle>) {
        total.with_label_values(&[self.source, self.reason]).inc();
        let suppressed = match logged.map(Throttle::allow) {
            None => 0,
            Some(Some(suppressed)) => suppressed,
            Some(None) => return,
        };
        let (seq, id, source, reason) = (self.seq, self.id, self.source, self.reason);
        match &self.place {
            DeadLetterPlace::Topic(topic) => tracing::error!(
                seq,
                source,
                reason,
                topic,
                suppressed,
                "spool: Kafka refused a record for good; it is on the dead-letter topic"
            ),
            DeadLetterPlace::Directory(directory) => tracing::error!(
                seq,
                source,
                reason,
                suppressed,
                directory = %directory.display(),
                "spool: Kafka refused a record for good; it is in the dead-letter directory (hookrelay spool dead list)"
            ),
            DeadLetterPlace::RefusedKept => {
                tracing::info!(id, reason, "refused event kept on the dead-letter topic")
            }
        }
    }
}
