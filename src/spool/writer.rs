//! The spool's only writer: group commit.
//!
//! It blocks for the first append request, takes every other request already waiting (up to a
//! batch limit), writes their frames with one `write` and makes them durable with one
//! `fdatasync`, then answers them all. Under load many requests share one fsync, so durability
//! costs latency (one fsync, 0.1–3 ms) but not throughput.
//!
//! Segments grow ahead of their records in steps of [`PREWRITE_STEP`] bytes of zeros, written
//! with the batch that crosses the end. Records then land in blocks the file already owns, so the
//! `fdatasync` of a group commit flushes data only: no size change, no ext4 journal commit (and no
//! wait for the journal thread on a busy CPU; the gain is in docs/benchmarks.md, *Measurements
//! behind the code's shape*). A reused segment (see [`super`]) is overwritten the same way, zeros
//! ahead of the records, so that records are always followed by zeros, never by the segment's
//! old records. Recovery treats the zeros as the end of the records.
//!
//! A failed write or fsync is answered as an error to every request of the batch (they get 503,
//! never a 2xx), the segment is cut back to its last durable length, and the spool reports
//! itself failing until a later write succeeds.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use prometheus::Histogram;

use super::codec;
use super::forwarder::ForwarderEvent;
use super::{Append, Shared, SpoolError, WriterMessage};
use crate::idempotency::Idempotency;

const MAX_BATCH_RECORDS: usize = 4096;
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// How far a segment is written ahead of its records, in zeros.
pub(super) const PREWRITE_STEP: u64 = 1024 * 1024;
/// How often a failing spool is probed, and how much room the probe wants.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const PROBE_BYTES: u64 = 64 * 1024;
/// Zeros at least this long follow the last record (a whole frame header reads as no frame).
pub(super) const FRAME_HEADER: u64 = codec::FRAME_HEADER as u64;

struct Writer {
    shared: Arc<Shared>,
    events: mpsc::Sender<ForwarderEvent>,
    fsync_seconds: Histogram,
    idempotency: Option<Arc<Idempotency>>,
    file: File,
    segment: u64,
    /// Length of the active segment up to its last durable record.
    length: u64,
    /// The file holds zeros from `length` up to here: records written there are followed by
    /// zeros, never by older bytes (a reused segment's previous records, a refused batch).
    zeroed: u64,
    /// Length of the active segment's file.
    file_len: u64,
    /// A cut back failed: bytes of a refused batch may follow `length`. No record is written
    /// until a cut back succeeds.
    uncut: bool,
    next_seq: u64,
    buffer: Vec<u8>,
}

pub(super) fn spawn(
    shared: Arc<Shared>,
    requests: mpsc::Receiver<WriterMessage>,
    events: mpsc::Sender<ForwarderEvent>,
    next_seq: u64,
    tail: super::Tail,
    fsync_seconds: Histogram,
    idempotency: Option<Arc<Idempotency>>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let (segment, file, file_len, continued) = open_active(&shared, next_seq, tail.end_seq)?;
    let (length, zeroed) = if continued {
        let length = tail.records_end.min(file_len);
        (length, tail.zeroed_to.clamp(length, file_len))
    } else {
        (0, 0)
    };
    let mut writer = Writer {
        shared,
        events,
        fsync_seconds,
        idempotency,
        file,
        segment,
        length,
        zeroed,
        file_len,
        uncut: false,
        next_seq,
        buffer: Vec::with_capacity(64 * 1024),
    };
    std::thread::Builder::new()
        .name("spool-writer".to_owned())
        .spawn(move || writer.run(requests))
}

/// The last segment, if its records end right before `next_seq`, else a new one starting at
/// `next_seq`; its file's length; whether it is the last segment continued. (The records of
/// the last segment end earlier when recovery cut it at a record the disk corrupted below the
/// checkpoint: appending there would put two sequence numbers out of order in one segment.)
fn open_active(
    shared: &Shared,
    next_seq: u64,
    last_end_seq: u64,
) -> io::Result<(u64, File, u64, bool)> {
    let mut segments = shared
        .segments
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let (segment, continued) = match segments.last() {
        Some(&last) if last_end_seq == next_seq || last == next_seq => (last, true),
        _ => {
            segments.push(next_seq);
            (next_seq, false)
        }
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(shared.segment_path(segment))?;
    let file_len = file.metadata()?.len();
    super::sync_dir(&shared.dir)?;
    Ok((segment, file, file_len, continued))
}

impl Writer {
    fn run(&mut self, requests: mpsc::Receiver<WriterMessage>) {
        let mut batch: Vec<Append> = Vec::new();
        let mut closing = false;
        while !closing {
            let message = if self.shared.failing.load(Ordering::Acquire) {
                match requests.recv_timeout(PROBE_EVERY) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.probe();
                        continue;
                    }
                    other => other.ok(),
                }
            } else {
                requests.recv().ok()
            };
            match message {
                Some(WriterMessage::Append(append)) => batch.push(append),
                Some(WriterMessage::Close) | None => break,
            }
            let mut bytes = batch[0].frame.len();
            while batch.len() < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES {
                match requests.try_recv() {
                    Ok(WriterMessage::Append(append)) => {
                        bytes += append.frame.len();
                        batch.push(append);
                    }
                    Ok(WriterMessage::Close) => {
                        closing = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
        }
        // Refuse what arrived after the close; those requests get 503.
        while let Ok(message) = requests.try_recv() {
            if let WriterMessage::Append(append) = message {
                let _ = append.reply.send(Err(SpoolError::Closed));
            }
        }
        let _ = self.events.send(ForwarderEvent::WriterClosed);
    }

    fn commit(&mut self, batch: &mut Vec<Append>) {
        if let Err(error) = self.roll_if_full() {
            self.fail(batch, &error);
            return;
        }
        let first_seq = self.next_seq;
        self.buffer.clear();
        for (index, append) in batch.iter_mut().enumerate() {
            codec::seal(&mut append.frame, first_seq + index as u64);
            self.buffer.extend_from_slice(&append.frame);
        }
        let records_bytes = self.buffer.len() as u64;
        let records_end = self.length + records_bytes;
        // At least a frame header of zeros follows the records (unless the file ends there).
        let pads = records_end + FRAME_HEADER > self.zeroed;
        if pads {
            // Zeros after the records up to the next step, in the same write: not past the
            // segment's size, unless the (reused) file is longer.
            let end = (records_end + FRAME_HEADER)
                .next_multiple_of(PREWRITE_STEP)
                .min(
                    self.shared
                        .segment_bytes
                        .max(records_end)
                        .max(self.file_len),
                );
            self.buffer.resize((end - self.length) as usize, 0);
        }
        let started = Instant::now();
        let mut written = self.write_buffer();
        if written.is_err() && pads && !self.uncut {
            // Perhaps no room for the zeros (a nearly full disk): the records alone may fit.
            self.cut_back();
            self.buffer.truncate(records_bytes as usize);
            written = self.write_buffer();
        }
        self.fsync_seconds.observe(started.elapsed().as_secs_f64());
        if let Err(error) = written {
            self.cut_back();
            self.fail(batch, &error);
            return;
        }
        if self.shared.failing.load(Ordering::Acquire) {
            tracing::info!("spool writes succeed again");
            self.shared.set_write_error(None);
        }
        let written_end = self.length + self.buffer.len() as u64;
        self.file_len = self.file_len.max(written_end);
        self.zeroed = self.zeroed.max(written_end);
        self.length = records_end;
        self.next_seq += batch.len() as u64;
        let shared = &self.shared;
        shared
            .live_bytes
            .fetch_add(records_bytes, Ordering::Relaxed);
        shared
            .live_records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Some(first) = batch.first() {
            let received = codec::received_ms(&first.frame[codec::FRAME_HEADER..]).unwrap_or(0);
            let _ = shared.oldest_received_ms.compare_exchange(
                0,
                received,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        shared.durable_seq.store(self.next_seq, Ordering::Release);
        let _ = self.events.send(ForwarderEvent::Written);
        for (index, append) in batch.drain(..).enumerate() {
            if let (Some(idempotency), Some(mut remembered)) = (&self.idempotency, append.dedup) {
                remembered.spooled_as(first_seq + index as u64);
                idempotency.remember(remembered);
            }
            let _ = append.reply.send(Ok(first_seq + index as u64));
        }
        if let Some(idempotency) = &self.idempotency {
            idempotency.flush_log();
        }
    }

    /// While writes fail and no request comes: tries what the next append needs (its segment
    /// rolled or cut back, [`PROBE_BYTES`] of zeros written ahead of the records, flushed), and
    /// clears the failure when that succeeds. A disk that was full and has room again, or that
    /// failed and works again, is used again without a restart.
    fn probe(&mut self) {
        let probed = self.roll_if_full().and_then(|()| {
            let end = (self.length + PROBE_BYTES).max(self.zeroed);
            self.buffer.clear();
            self.buffer.resize((end - self.length) as usize, 0);
            self.write_buffer()
        });
        match probed {
            Ok(()) => {
                let end = self.length + self.buffer.len() as u64;
                self.file_len = self.file_len.max(end);
                self.zeroed = end;
                tracing::info!("spool writes succeed again (probe)");
                self.shared.set_write_error(None);
            }
            Err(error) => {
                self.cut_back();
                self.shared
                    .set_write_error(Some(format!("{} (segment {})", error, self.segment)));
            }
        }
    }

    fn write_buffer(&mut self) -> io::Result<()> {
        if self.uncut {
            self.cut_back();
            if self.uncut {
                return Err(io::Error::other(
                    "cannot cut the segment back after a failed write",
                ));
            }
        }
        self.file
            .write_all_at(&self.buffer, self.length)
            .and_then(|()| self.file.sync_data())
    }

    /// Cuts the segment back to its last durable record, so that no half-written frame stays
    /// behind, and tells readers to forget what they read past it.
    fn cut_back(&mut self) {
        self.uncut = self.file.set_len(self.length).is_err();
        self.file_len = self.length;
        self.zeroed = self.length;
        // After the cut: a reader that sees the new count and reads again reads the cut file.
        self.shared.cut_backs.fetch_add(1, Ordering::Release);
    }

    /// Starts a new segment when the active one has reached its size.
    fn roll_if_full(&mut self) -> io::Result<()> {
        if self.length < self.shared.segment_bytes || self.uncut {
            return Ok(());
        }
        let path = self.shared.segment_path(self.next_seq);
        self.shared.reuse_spare(self.next_seq)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        // A reused segment still holds its old records: zeros go ahead of the new ones.
        let file_len = file.metadata()?.len();
        super::sync_dir(&self.shared.dir)?;
        self.shared
            .segments
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(self.next_seq);
        self.file = file;
        self.segment = self.next_seq;
        self.length = 0;
        self.zeroed = 0;
        self.file_len = file_len;
        Ok(())
    }

    fn fail(&mut self, batch: &mut Vec<Append>, error: &io::Error) {
        let reason = format!("{} (segment {})", error, self.segment);
        if !self.shared.failing.load(Ordering::Acquire) {
            tracing::error!(%error, "spool write failed; answering 503 until writes succeed again");
        }
        self.shared.set_write_error(Some(reason));
        // Every request of the batch learns the same failure.
        let shared = Arc::new(io::Error::new(error.kind(), error.to_string()));
        for append in batch.drain(..) {
            let _ = append.reply.send(Err(SpoolError::Io {
                segment: self.segment,
                source: shared.clone(),
            }));
        }
    }
}
