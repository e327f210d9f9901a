//! The forwarder: reads spooled records in order and publishes them, keeping up to
//! [`MAX_IN_FLIGHT`] unacknowledged at a time.
//!
//! Delivery reports arrive on the producer's thread and are sent here as events. While records are
//! in flight and nothing new can be sent, the forwarder pauses [`GATHER`] before it waits, so that
//! reports and writes are taken in batches instead of one wake-up each (measured at 38 000
//! requests/s: 3 400 → 780 wake-ups/s, spool CPU per request −8 %). The checkpoint
//! advances over the contiguous prefix of acknowledged records and is persisted at most every
//! [`CHECKPOINT_EVERY`] (a crash re-sends at most that much: at-least-once). Segments entirely
//! below the checkpoint are retired (kept for reuse as the next segment, or deleted).
//!
//! A failed delivery (librdkafka gave up after `message.timeout.ms`, or a permanent error)
//! rewinds: once every in-flight record has its report, reading restarts at the first failed
//! record, after a pause. Records after it that were delivered are sent again, so that nothing
//! is dropped and the last copies of a key's records arrive in order.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use prometheus::IntCounter;

use super::{codec, Location, Reader, Shared};
use crate::metrics::SourceMetrics;
use crate::publisher::{PublishError, Publisher};

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
    /// Kafka's verdict on record `seq`.
    Delivered { seq: u64, ok: bool },
    /// Shut down: deliver what can be delivered before the deadline, then stop.
    Stop(Instant),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Delivered,
    Failed,
}

struct InFlight {
    seq: u64,
    location: Location,
    size: u64,
    received_ms: u64,
    state: State,
}

struct Forwarder {
    shared: Arc<Shared>,
    checkpoint_file: super::CheckpointFile,
    publisher: Arc<Publisher>,
    sources: HashMap<String, Arc<SourceMetrics>>,
    retries: IntCounter,
    /// Records skipped because the disk lost them.
    lost: IntCounter,
    events: mpsc::Sender<ForwarderEvent>,
    reader: Reader,
    window: VecDeque<InFlight>,
    checkpoint: u64,
    persisted: u64,
    persisted_at: Instant,
    rewind_to: Option<u64>,
    paused_until: Option<Instant>,
    stop_at: Option<Instant>,
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

pub(super) fn spawn(
    shared: Arc<Shared>,
    publisher: Arc<Publisher>,
    sources: HashMap<String, Arc<SourceMetrics>>,
    (retries, lost): (IntCounter, IntCounter),
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
    let mut forwarder = Forwarder {
        checkpoint_file,
        shared,
        publisher,
        sources,
        retries,
        lost,
        events: events.clone(),
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
        .spawn(move || forwarder.run(receiver))?;
    Ok(Handle { events, thread })
}

impl Forwarder {
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
            ForwarderEvent::Delivered { seq, ok } => {
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
                if ok {
                    entry.state = State::Delivered;
                } else {
                    entry.state = State::Failed;
                    self.rewind_to = Some(self.rewind_to.map_or(seq, |first| first.min(seq)));
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
                tracing::error!(seq, "spool: a record cannot be decoded; skipping it");
                self.window.push_back(InFlight {
                    seq,
                    location,
                    size,
                    received_ms: 0,
                    state: State::Delivered,
                });
                continue;
            };
            let metrics = self.sources.get(record.source).cloned();
            let received_ms = record.received_ms;
            match self
                .publisher
                .forward(&record, metrics, seq, self.events.clone())
            {
                Ok(()) => self.window.push_back(InFlight {
                    seq,
                    location,
                    size,
                    received_ms,
                    state: State::InFlight,
                }),
                Err(error) => {
                    // Read it again later; a full queue drains as reports arrive. (Where the
                    // record itself starts: the segment before it may be retired already.)
                    self.reader.seek(location, seq);
                    if !matches!(error, PublishError::QueueFull) {
                        tracing::warn!(%error, "spool: cannot hand a record to the producer");
                    }
                    self.paused_until = Some(Instant::now() + Duration::from_millis(10));
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Records the disk lost (a corrupt record, or a stretch missing between two segments) would
    /// stop the forwarder there for good: once everything before them is settled, it logs them
    /// and goes on with the next segment.
    fn skip_lost(&mut self) -> std::io::Result<()> {
        if !self.window.is_empty() || self.rewind_to.is_some() {
            return Ok(());
        }
        let Some(resume) = self.reader.lost_until()? else {
            return Ok(());
        };
        // The segment is retired (and reused) once delivery moves past it: keep a copy of what
        // the disk left, for whoever wants to salvage records by hand.
        let segment = self.shared.segment_path(self.reader.segment);
        let copy = segment.with_extension("seg.corrupt");
        if !copy.exists() {
            let copied =
                std::fs::copy(&segment, &copy).and_then(|_| std::fs::File::open(&copy)?.sync_all());
            if let Err(error) = copied {
                tracing::warn!(%error, "spool: cannot keep a copy of a corrupt segment");
                let _ = std::fs::remove_file(&copy);
            }
        }
        // Below the checkpoint they were delivered before the disk lost them.
        let from = self.reader.next_seq.max(self.checkpoint);
        tracing::error!(
            from_seq = from,
            to_seq = resume - 1,
            copy = %copy.display(),
            "spool: records are corrupt or missing (the disk lost written data); skipping them"
        );
        self.lost.inc_by(resume.saturating_sub(from));
        self.reader.seek(
            Location {
                segment: resume,
                offset: 0,
            },
            resume,
        );
        self.checkpoint = resume;
        self.shared.checkpoint.store(resume, Ordering::Relaxed);
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
        let mut segments = self
            .shared
            .segments
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        while segments.len() > 1 && segments[1] <= self.persisted {
            let first = segments.remove(0);
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
        self.publisher.reset_if_broken();
        self.window.truncate(index);
        self.retries.inc_by(resent as u64);
        tracing::warn!(
            from_seq = first_failed,
            records = resent,
            "spool: Kafka did not acknowledge records; sending them again"
        );
        self.reader.seek(location, first_failed);
        self.rewind_to = None;
        self.paused_until = Some(Instant::now() + REWIND_PAUSE);
    }
}
