//! The forwarder: reads spooled records in order and publishes them, keeping up to
//! [`MAX_IN_FLIGHT`] unacknowledged at a time.
//!
//! Delivery reports arrive on the producer's thread and are sent here as events. While records are
//! in flight and nothing new can be sent, the forwarder pauses [`GATHER`] before it waits, so that
//! reports and writes are taken in batches instead of one wake-up each (a quarter of the wake-ups
//! under load: docs/benchmarks.md, *Measurements behind the code's shape*). The checkpoint
//! advances over the contiguous prefix of acknowledged records and is persisted at most every
//! [`CHECKPOINT_EVERY`] (a crash re-sends at most that much: at-least-once). Segments entirely
//! below the checkpoint are retired (kept for reuse as the next segment, or deleted).
//!
//! A retriable failure (librdkafka gave up after `message.timeout.ms`, a broker error that may
//! pass) rewinds: once every in-flight record has its report, reading restarts at the first failed
//! record, after a pause. Records after it that were delivered are sent again, so that nothing
//! is dropped and the last copies of a key's records arrive in order. A permanent refusal
//! ([`Refusal::Permanent`]: too large, topic gone, not authorized, invalid) does not rewind: the
//! record goes to the dead-letter topic, else the dead-letter directory ([`DeadLetters`]), and the
//! records behind it flow on. Records the disk damaged are skipped at the next intact one and
//! counted lost.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec};

use super::dead::DeadLetters;
use super::{codec, Location, Reader, Shared};
use crate::events::{DeadLetterPlace, DeadLettered, LostCause, RecordsLost, RecordsResent};
use crate::metrics::SourceMetrics;
use crate::publisher::{self, Ack, PublishError, Publisher, Record, Refusal, ReportSink};
use crate::record::{self, DEAD_REASON_HEADER};

const MAX_IN_FLIGHT: usize = 10_000;
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
const REWIND_PAUSE: Duration = Duration::from_millis(500);
const IDLE_WAIT: Duration = Duration::from_millis(100);
const GATHER: Duration = Duration::from_millis(1);

/// What wakes the forwarder.
pub enum ForwarderEvent {
    /// The writer made more records durable.
    Written,
    /// The writer has stopped.
    WriterClosed,
    /// Kafka's verdict on record `seq`: `None` when it has the record.
    Delivered { seq: u64, refused: Option<Refusal> },
    /// Shut down: deliver what can be delivered before the deadline, then stop.
    Stop(Instant),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Delivered,
    Failed,
    /// Refused for good (the reason): to the dead-letter topic, else the dead-letter directory.
    Refused(&'static str),
    /// The dead-letter topic refused it too: to the dead-letter directory.
    ToDirectory(&'static str),
}

struct InFlight {
    seq: u64,
    location: Location,
    size: u64,
    received_ms: u64,
    state: State,
    /// Sent to the dead-letter topic: why, and the source (for the metric).
    dead_letter: Option<(&'static str, String)>,
}

struct Forwarder {
    shared: Arc<Shared>,
    checkpoint_file: super::CheckpointFile,
    publisher: Arc<Publisher>,
    sources: HashMap<String, Arc<SourceMetrics>>,
    retries: IntCounter,
    /// Records skipped because the disk lost them.
    lost: IntCounter,
    /// Where records Kafka refused for good go: the topic, else the directory.
    dead_letter_topic: Option<String>,
    dead_letters: DeadLetters,
    dead_letters_total: IntCounterVec,
    /// The lines of resends and dead letters, which repeat for as long as their cause lasts.
    resends_logged: crate::telemetry::Throttle,
    dead_letters_logged: crate::telemetry::Throttle,
    /// Some record of the window waits in [`State::Refused`] or [`State::ToDirectory`].
    refused_waiting: bool,
    /// Where the producer sends the delivery reports of this forwarder's records.
    reports: Arc<dyn ReportSink>,
    reader: Reader,
    window: VecDeque<InFlight>,
    checkpoint: u64,
    persisted: u64,
    persisted_at: Instant,
    rewind_to: Option<u64>,
    paused_until: Option<Instant>,
    stop_at: Option<Instant>,
}

/// The producer's delivery reports of spooled records, by sequence number, as forwarder events.
struct Reports(mpsc::Sender<ForwarderEvent>);

impl ReportSink for Reports {
    fn report(&self, seq: u64, outcome: Result<Ack, &rdkafka::error::KafkaError>) {
        let _ = self.0.send(ForwarderEvent::Delivered {
            seq,
            refused: outcome.err().map(Refusal::of),
        });
    }
}

pub(super) struct Handle {
    events: mpsc::Sender<ForwarderEvent>,
    thread: std::thread::JoinHandle<()>,
}

impl Handle {
    pub(super) fn stop(self, deadline: Instant) {
        let _ = self.events.send(ForwarderEvent::Stop(deadline));
        let _ = self.thread.join();
    }
}

/// Where the forwarder puts records Kafka refused for good, and their count.
pub struct DeadLetterRoute {
    pub topic: Option<String>,
    pub total: IntCounterVec,
}

pub(super) fn spawn(
    shared: Arc<Shared>,
    publisher: Arc<Publisher>,
    sources: HashMap<String, Arc<SourceMetrics>>,
    (retries, lost): (IntCounter, IntCounter),
    dead_letter: DeadLetterRoute,
    events: mpsc::Sender<ForwarderEvent>,
    receiver: mpsc::Receiver<ForwarderEvent>,
) -> std::io::Result<Handle> {
    let checkpoint = shared.checkpoint();
    let segments = shared
        .segments
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone();
    let reader = Reader::new(shared.clone(), &segments, checkpoint)?;
    let checkpoint_file = super::CheckpointFile::open(&shared.dir)?;
    let shared_dir = shared.dir.clone();
    let mut forwarder = Forwarder {
        checkpoint_file,
        shared,
        publisher,
        sources,
        retries,
        lost,
        dead_letter_topic: dead_letter.topic,
        dead_letters: DeadLetters::new(&shared_dir),
        dead_letters_total: dead_letter.total,
        resends_logged: crate::telemetry::Throttle::new(crate::events::REPEAT_LOG_INTERVAL),
        dead_letters_logged: crate::telemetry::Throttle::new(crate::events::REPEAT_LOG_INTERVAL),
        refused_waiting: false,
        reports: Arc::new(Reports(events.clone())),
        reader,
        window: VecDeque::new(),
        checkpoint,
        persisted: checkpoint,
        persisted_at: Instant::now(),
        rewind_to: None,
        paused_until: None,
        stop_at: None,
    };
    let thread = std::thread::Builder::new()
        .name("spool-forwarder".to_owned())
        .spawn(move || {
            // Its sender has its answer: forwarding gives way to live requests (crate::priority).
            crate::priority::lower_current_thread();
            forwarder.run(receiver)
        })?;
    Ok(Handle { events, thread })
}

impl Forwarder {
    /// Publishes a spooled record as it was received; with `dead_letter = (topic, reason)` to
    /// that dead-letter topic instead, with two more headers: `hookrelay_dead_reason` and
    /// `hookrelay_dead_topic` (where it was meant to go). Its report comes back as an event.
    fn publish(
        &self,
        stored: &codec::Decoded<'_>,
        dead_letter: Option<(&str, &str)>,
        source: Option<Arc<SourceMetrics>>,
        seq: u64,
    ) -> Result<(), PublishError> {
        let record = match dead_letter {
            None => Record {
                topic: stored.topic,
                key: stored.key,
                value: stored.value,
                headers: publisher::headers(&stored.headers),
            },
            Some((topic, reason)) => {
                let mut fields = stored.headers.clone();
                record::mark_dead(&mut fields, reason, stored.topic);
                Record {
                    topic,
                    key: stored.key,
                    value: stored.value,
                    headers: publisher::headers(&fields),
                }
            }
        };
        // The delivery latency counts from when the event was received.
        let age = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH + Duration::from_millis(stored.received_ms))
            .unwrap_or(Duration::ZERO);
        let accepted = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        self.publisher
            .send_reported(record, source, accepted, seq, self.reports.clone())
    }

    fn run(&mut self, receiver: mpsc::Receiver<ForwarderEvent>) {
        loop {
            let wait = if self.can_send() {
                Duration::ZERO
            } else {
                if !self.window.is_empty() && self.stop_at.is_none() {
                    // Records are in flight: let their reports and new writes gather for a
                    // moment rather than waking up for each of them.
                    std::thread::sleep(GATHER);
                }
                IDLE_WAIT
            };
            match receiver.recv_timeout(wait) {
                Ok(event) => self.handle(event),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            while let Ok(event) = receiver.try_recv() {
                self.handle(event);
            }
            self.settle_refused();
            self.advance_checkpoint();
            self.rewind_when_settled();
            if let Err(error) = self.send_more() {
                tracing::error!(%error, "spool: cannot read a record; retrying");
                self.paused_until = Some(Instant::now() + REWIND_PAUSE);
            }
            if let Some(stop_at) = self.stop_at {
                let drained =
                    self.window.is_empty() && self.reader.next_seq >= self.shared.durable_seq();
                if drained || Instant::now() >= stop_at {
                    break;
                }
            }
        }
        self.persist(true);
    }

    fn handle(&mut self, event: ForwarderEvent) {
        match event {
            ForwarderEvent::Written | ForwarderEvent::WriterClosed => {}
            ForwarderEvent::Stop(deadline) => self.stop_at = Some(deadline),
            ForwarderEvent::Delivered { seq, refused } => {
                let Some(front) = self.window.front().map(|entry| entry.seq) else {
                    return;
                };
                let Some(entry) = seq
                    .checked_sub(front)
                    .and_then(|index| self.window.get_mut(index as usize))
                else {
                    return;
                };
                if entry.seq != seq || entry.state != State::InFlight {
                    return;
                }
                match (refused, entry.dead_letter.take()) {
                    (None, None) => entry.state = State::Delivered,
                    (None, Some((reason, source))) => {
                        entry.state = State::Delivered;
                        DeadLettered {
                            seq: Some(seq),
                            id: None,
                            source: &source,
                            reason,
                            place: DeadLetterPlace::Topic(
                                self.dead_letter_topic.as_deref().unwrap_or_default(),
                            ),
                        }
                        .emit(&self.dead_letters_total, Some(&self.dead_letters_logged));
                    }
                    (Some(Refusal::Permanent(reason)), None) => {
                        entry.state = State::Refused(reason);
                        self.refused_waiting = true;
                    }
                    (Some(Refusal::Permanent(_)), Some((reason, _))) => {
                        entry.state = State::ToDirectory(reason);
                        self.refused_waiting = true;
                    }
                    (Some(Refusal::Retriable), _) => {
                        entry.state = State::Failed;
                        self.rewind_to = Some(self.rewind_to.map_or(seq, |first| first.min(seq)));
                    }
                }
            }
        }
    }

    fn can_send(&self) -> bool {
        self.rewind_to.is_none()
            && self
                .paused_until
                .is_none_or(|until| Instant::now() >= until)
            && self.window.len() < MAX_IN_FLIGHT
            && self.reader.next_seq < self.shared.durable_seq()
    }

    fn send_more(&mut self) -> std::io::Result<()> {
        while self.can_send() {
            self.paused_until = None;
            let Some(frame) = self.reader.next()? else {
                self.skip_lost()?;
                return Ok(());
            };
            let (location, seq, size) = (frame.location, frame.seq, frame.size);
            let Some(record) = codec::decode_ref(&frame.payload) else {
                // Intact (its CRC matches) but not in a format this binary knows: lost to it.
                let version = frame.payload.first().copied();
                RecordsLost::one(seq, LostCause::Undecodable { version }).emit(&self.lost);
                self.window.push_back(InFlight {
                    seq,
                    location,
                    size,
                    received_ms: 0,
                    state: State::Delivered,
                    dead_letter: None,
                });
                continue;
            };
            let metrics = self.sources.get(record.source).cloned();
            let received_ms = record.received_ms;
            let refused = match self.publish(&record, None, metrics, seq) {
                Ok(()) => None,
                Err(PublishError::Kafka(error)) if Refusal::of(&error) != Refusal::Retriable => {
                    Some(Refusal::of(&error))
                }
                Err(error) => {
                    // Read it again later; a full queue drains as reports arrive. (Where the
                    // record itself starts: the segment before it may be retired already.)
                    self.reader.seek(location, seq);
                    if !matches!(error, PublishError::QueueFull | PublishError::Replacing) {
                        tracing::warn!(%error, "spool: cannot hand a record to the producer");
                    }
                    self.paused_until = Some(Instant::now() + Duration::from_millis(10));
                    return Ok(());
                }
            };
            let state = match refused {
                Some(Refusal::Permanent(reason)) => {
                    self.refused_waiting = true;
                    State::Refused(reason)
                }
                _ => State::InFlight,
            };
            self.window.push_back(InFlight {
                seq,
                location,
                size,
                received_ms,
                state,
                dead_letter: None,
            });
        }
        Ok(())
    }

    /// Records Kafka refused for good go to the dead-letter topic (same key, value and headers,
    /// plus the reason and the topic they were meant for), or, when there is none or it refuses
    /// them too, to the dead-letter directory. Either way they stop blocking the records behind
    /// them. When neither can take a record now (a full disk), it stays and is tried again.
    fn settle_refused(&mut self) {
        if !self.refused_waiting
            || self
                .paused_until
                .is_some_and(|until| Instant::now() < until)
        {
            return;
        }
        for index in 0..self.window.len() {
            let entry = &self.window[index];
            let (seq, location) = (entry.seq, entry.location);
            let (reason, to_topic) = match entry.state {
                State::Refused(reason) => (reason, self.dead_letter_topic.is_some()),
                State::ToDirectory(reason) => (reason, false),
                _ => continue,
            };
            let payload = match self.reader.read_at(location, seq) {
                Ok(Some(payload)) => payload,
                Ok(None) => {
                    RecordsLost::one(seq, LostCause::Unreadable).emit(&self.lost);
                    self.window[index].state = State::Delivered;
                    continue;
                }
                Err(error) => {
                    tracing::error!(%error, seq, "spool: cannot read a refused record; retrying");
                    self.paused_until = Some(Instant::now() + REWIND_PAUSE);
                    return;
                }
            };
            let Some(record) = codec::decode_ref(&payload) else {
                let version = payload.first().copied();
                RecordsLost::one(seq, LostCause::Undecodable { version }).emit(&self.lost);
                self.window[index].state = State::Delivered;
                continue;
            };
            if let (true, Some(topic)) = (to_topic, self.dead_letter_topic.as_deref()) {
                let metrics = self.sources.get(record.source).cloned();
                match self.publish(&record, Some((topic, reason)), metrics, seq) {
                    Ok(()) => {
                        let entry = &mut self.window[index];
                        entry.state = State::InFlight;
                        entry.dead_letter = Some((reason, record.source.to_owned()));
                        continue;
                    }
                    Err(PublishError::QueueFull) => {
                        self.paused_until = Some(Instant::now() + Duration::from_millis(10));
                        return;
                    }
                    // Refused by the dead-letter topic too: the directory.
                    Err(_) => {}
                }
            }
            if !self.to_directory(seq, &record, reason) {
                self.paused_until = Some(Instant::now() + REWIND_PAUSE);
                return;
            }
            self.window[index].state = State::Delivered;
        }
        // Every one was taken on (to the topic) or settled.
        self.refused_waiting = false;
    }

    /// Writes a record Kafka refused for good to the dead-letter directory, with its reason;
    /// `false` when the directory cannot take it now (retried later).
    fn to_directory(&self, seq: u64, record: &codec::Decoded<'_>, reason: &str) -> bool {
        let mut headers = record.headers.clone();
        headers.push((DEAD_REASON_HEADER, reason.as_bytes()));
        let written = self.dead_letters.write(
            seq,
            &codec::Entry {
                received: std::time::UNIX_EPOCH + Duration::from_millis(record.received_ms),
                source: record.source,
                topic: record.topic,
                key: record.key,
                headers: &headers,
                value: record.value,
            },
        );
        match written {
            Ok(()) => {
                DeadLettered {
                    seq: Some(seq),
                    id: None,
                    source: record.source,
                    reason,
                    place: DeadLetterPlace::Directory(self.dead_letters.dir()),
                }
                .emit(&self.dead_letters_total, Some(&self.dead_letters_logged));
                true
            }
            Err(error) => {
                tracing::error!(%error, seq, "spool: cannot write a dead letter; retrying");
                false
            }
        }
    }

    /// Records the disk lost (a corrupt record, or a stretch missing between two segments) would
    /// stop the forwarder there for good: once everything before them is settled, it logs and
    /// counts them and goes on with the next intact record.
    fn skip_lost(&mut self) -> std::io::Result<()> {
        if !self.window.is_empty() || self.rewind_to.is_some() {
            return Ok(());
        }
        let Some((location, resume)) = self.reader.lost_until()? else {
            return Ok(());
        };
        let segment = self.shared.segment_path(self.reader.segment);
        super::keep_corrupt_copy(&segment);
        // Below the checkpoint they were delivered before the disk lost them.
        let from = self.reader.next_seq.max(self.checkpoint);
        RecordsLost {
            from_seq: from,
            to_seq: resume - 1,
            count: resume.saturating_sub(from),
            cause: LostCause::Corrupt { segment: &segment },
        }
        .emit(&self.lost);
        self.reader.seek(location, resume);
        self.checkpoint = self.checkpoint.max(resume);
        self.shared
            .checkpoint
            .store(self.checkpoint, Ordering::Relaxed);
        self.persist(true);
        Ok(())
    }

    fn advance_checkpoint(&mut self) {
        let mut freed_bytes = 0;
        let mut freed_records = 0;
        while self
            .window
            .front()
            .is_some_and(|entry| entry.state == State::Delivered)
        {
            if let Some(entry) = self.window.pop_front() {
                self.checkpoint = entry.seq + 1;
                freed_bytes += entry.size;
                freed_records += 1;
            }
        }
        if freed_records > 0 {
            let shared = &self.shared;
            shared.live_bytes.fetch_sub(freed_bytes, Ordering::Relaxed);
            shared
                .live_records
                .fetch_sub(freed_records, Ordering::Relaxed);
            shared.checkpoint.store(self.checkpoint, Ordering::Relaxed);
            shared.drain.delivered(freed_bytes);
            let oldest = self.window.front().map_or(0, |entry| entry.received_ms);
            shared.oldest_received_ms.store(oldest, Ordering::Relaxed);
        }
        self.persist(false);
    }

    fn persist(&mut self, force: bool) {
        if self.checkpoint == self.persisted
            || (!force && self.persisted_at.elapsed() < CHECKPOINT_EVERY)
        {
            return;
        }
        match self.checkpoint_file.write(self.checkpoint) {
            Ok(()) => {
                self.persisted = self.checkpoint;
                self.persisted_at = Instant::now();
                self.reclaim();
            }
            Err(error) => tracing::error!(%error, "spool: cannot write the checkpoint"),
        }
    }

    /// Retires (keeps as the spare, or deletes) segments whose records are all below the
    /// persisted checkpoint.
    fn reclaim(&self) {
        let delivered: Vec<u64> = {
            let mut segments = self
                .shared
                .segments
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let count = segments
                .iter()
                .skip(1)
                .take_while(|&&next| next <= self.persisted)
                .count();
            segments.drain(..count).collect()
        };
        // Without the segments' lock: the writer takes it to roll to a new segment.
        for first in delivered {
            if let Err(error) = self.shared.retire(first) {
                tracing::warn!(%error, "spool: cannot retire a delivered segment");
            }
        }
    }

    /// After a failure, once nothing is in flight: restart reading at the first failed record.
    fn rewind_when_settled(&mut self) {
        let Some(first_failed) = self.rewind_to else {
            return;
        };
        if self
            .window
            .iter()
            .any(|entry| entry.state == State::InFlight)
        {
            return;
        }
        let Some(index) = self
            .window
            .iter()
            .position(|entry| entry.seq == first_failed)
        else {
            self.rewind_to = None;
            return;
        };
        let location = self.window[index].location;
        let resent = self.window.len() - index;
        self.window.truncate(index);
        RecordsResent {
            from_seq: first_failed,
            count: resent as u64,
        }
        .emit(&self.retries, &self.resends_logged);
        self.reader.seek(location, first_failed);
        self.rewind_to = None;
        self.paused_until = Some(Instant::now() + REWIND_PAUSE);
    }
}
