//! The write-ahead spool: where `ack = "spool"` events become durable before the sender gets its
//! 2xx, and where they wait until Kafka has acknowledged them.
//!
//! Layout of `delivery.spool_dir`:
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: segments of framed records ([`codec`]), named by the sequence
//!   number of their first record; appended by one writer thread, rolled at a size limit;
//! - `checkpoint`: every record with a lower sequence number has been acknowledged by Kafka;
//! - `idempotency.log`: the deduplication window (see [`crate::idempotency`]);
//! - `spare`: a delivered segment kept for reuse as the next segment (see below);
//! - `NNNNNNNNNNNNNNNNNNNN.retired`: a delivered segment being deleted, a few MiB at a time, by
//!   the deleter thread;
//! - `lock`: held (flock) by the running relay, so two relays never share a spool.
//!
//! Durability: the [`writer`] appends the records of every request waiting at that moment in one
//! `write` and one `fdatasync` (group commit), then answers all of them. The [`forwarder`] reads
//! records in order, publishes them, advances the checkpoint over contiguously acknowledged
//! records, and deletes segments below it. A failed delivery rewinds the forwarder to that record,
//! so nothing is ever dropped and the last copies arrive in per-key order (at least once).
//!
//! A delivered segment is not deleted while there is no spare: it is renamed to `spare`, and the
//! writer's next roll renames it to the new segment's name and overwrites it in place. Deleting
//! a 64 MiB file frees its blocks, and on a filesystem mounted with `discard` (common on virtual
//! disks) that stalls the device's next flushes (docs/benchmarks.md, *Measurements behind the
//! code's shape*). The writer overwrites a reused segment as it
//! writes a new one, zeros ahead of its records, so its old records are never next to new ones.
//!
//! Recovery after a crash scans every segment. A damaged record with intact ones after it is
//! skipped: the scan resynchronises at the next intact frame ([`recovery::find_next_frame`]). In the last
//! segment, the zeros after the records (up to the next 1 MiB step) are kept; anything else there
//! with nothing intact after it is a torn or damaged tail, cut off (a copy kept) and logged. What
//! lies past that step (a reused segment's old records) is zeroed by the writer before its
//! records get there. Sequence numbers that recovery finds absent are reported
//! ([`Recovery::absent`]) so that the ids remembered for them are forgotten.

mod checkpoint;
pub mod codec;
pub mod dead;
mod forwarder;
mod reader;
mod recovery;
mod status;
mod writer;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use checkpoint::{read_checkpoint, CheckpointFile};
pub use codec::{Entry, Stored};
pub use forwarder::{DeadLetterRoute, ForwarderEvent};
use reader::{Location, Reader};
use recovery::{keep_corrupt_copy, recover_segments, Tail};
pub use status::Status;

use crate::retry::DrainRate;

/// Largest segment file; smaller spools roll at a quarter of their limit so that delivered
/// records are reclaimed before the limit is reached.
const MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full")]
    Full { retry_after: u64 },
    #[error("the spool cannot be written (segment {segment}): {source}")]
    Io {
        segment: u64,
        source: Arc<io::Error>,
    },
    #[error("the spool is closed")]
    Closed,
}

/// Spool counters shared by the writer, the forwarder and the request path.
pub struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Every record below this sequence number is on disk and fsync'd.
    durable_seq: AtomicU64,
    /// Records not yet acknowledged by Kafka, and their bytes.
    live_records: AtomicU64,
    live_bytes: AtomicU64,
    /// Receive time (ms since the epoch) of the oldest unacknowledged record; 0 when none.
    oldest_received_ms: AtomicU64,
    checkpoint: AtomicU64,
    /// First sequence numbers of the segment files, ascending; the last is being appended.
    segments: Mutex<Vec<u64>>,
    /// Set while writes fail; cleared by the next successful write.
    write_error: Mutex<Option<String>>,
    /// Whether the `spare` file holds a delivered segment ready for reuse.
    spare: Mutex<bool>,
    /// How many times the writer has cut a segment back after a failed write. Bytes of the
    /// refused batch may have been read ahead by the forwarder's [`Reader`] before the cut, and
    /// the next batch reuses their sequence numbers: a reader that sees this change drops what it
    /// has buffered.
    cut_backs: AtomicU64,
    failing: AtomicBool,
    drain: DrainRate,
    /// Delivered segments to delete, for the deleter thread ([`spawn_deleter`]).
    deleter: mpsc::Sender<PathBuf>,
}

impl Shared {
    pub fn live_records(&self) -> u64 {
        self.live_records.load(Ordering::Relaxed)
    }

    pub fn live_bytes(&self) -> u64 {
        self.live_bytes.load(Ordering::Relaxed)
    }

    pub fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Ordering::Relaxed)
    }

    pub fn durable_seq(&self) -> u64 {
        self.durable_seq.load(Ordering::Acquire)
    }

    /// Age of the oldest record Kafka has not acknowledged.
    pub fn oldest_age(&self) -> Duration {
        match self.oldest_received_ms.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            ms => SystemTime::now()
                .duration_since(UNIX_EPOCH + Duration::from_millis(ms))
                .unwrap_or(Duration::ZERO),
        }
    }

    /// The reason writes fail, while they do.
    pub fn write_error(&self) -> Option<String> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        self.write_error
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn set_write_error(&self, error: Option<String>) {
        self.failing.store(error.is_some(), Ordering::Release);
        *self
            .write_error
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = error;
    }

    fn segment_path(&self, first_seq: u64) -> PathBuf {
        segment_path(&self.dir, first_seq)
    }

    /// Retires a delivered segment: kept as the spare when there is none, else renamed out of
    /// the segments' names at once (recovery never reads it again) and deleted a step at a time
    /// by the deleter thread ([`delete_in_steps`]).
    fn retire(&self, first_seq: u64) -> io::Result<()> {
        let path = self.segment_path(first_seq);
        {
            let mut spare = self
                .spare
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            // Not one sized for other settings (a larger spool before a restart).
            let oversized = fs::metadata(&path)?.len() > self.segment_bytes + writer::PREWRITE_STEP;
            if !*spare && !oversized {
                fs::rename(&path, self.dir.join(SPARE))?;
                *spare = true;
                return Ok(());
            }
        }
        let retired = path.with_extension(RETIRED);
        if let Err(error) = fs::rename(&path, &retired) {
            // Not renamed: deleted at once rather than left behind, out of the segments' list.
            tracing::warn!(%error, path = %path.display(), "spool: cannot rename a delivered segment; deleting it at once");
            return fs::remove_file(&path);
        }
        if let Err(mpsc::SendError(retired)) = self.deleter.send(retired) {
            delete_now(&retired);
        }
        Ok(())
    }

    /// Renames the spare, if there is one, to be the segment starting at `first_seq`; returns
    /// whether it did.
    fn reuse_spare(&self, first_seq: u64) -> io::Result<bool> {
        let mut spare = self
            .spare
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if !*spare {
            return Ok(false);
        }
        *spare = false;
        fs::rename(self.dir.join(SPARE), self.segment_path(first_seq))?;
        Ok(true)
    }

    /// Seconds until the spool has drained enough for `needed` more bytes.
    fn retry_after_secs(&self, needed: u64) -> u64 {
        let excess = (self.live_bytes() + needed).saturating_sub(self.max_bytes);
        self.drain.retry_after_secs(excess)
    }
}

/// What [`Spool::open`] found on disk.
#[derive(Debug, Default)]
pub struct Recovery {
    pub records: u64,
    pub bytes: u64,
    pub checkpoint: u64,
    /// Bytes cut off torn or corrupt segment tails.
    pub truncated_bytes: u64,
    /// Sequence numbers that are not in the spool although records may have had them: damaged
    /// records, stretches missing between segments, and everything after the last intact record.
    /// Ids remembered for such records are forgotten, so that a resend is accepted.
    pub absent: Vec<std::ops::Range<u64>>,
}

/// A request to the writer thread.
enum WriterMessage {
    Append(Append),
    Close,
}

struct Append {
    frame: Vec<u8>,
    dedup: Option<crate::idempotency::Remembered>,
    reply: oneshot::Sender<Result<u64, SpoolError>>,
}

/// A handle on the open spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriterMessage>,
}

/// The spool's background threads, joined at shutdown.
pub struct SpoolThreads {
    writer: std::thread::JoinHandle<()>,
    forwarder: forwarder::Handle,
    _lock: File,
}

impl Spool {
    /// Opens (creating if needed) and recovers the spool in `dir`, then starts the writer.
    /// The forwarder is started separately ([`Spool::start_forwarder`]) once Kafka is set up.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        metrics: &crate::metrics::Metrics,
        idempotency: Option<Arc<crate::idempotency::Idempotency>>,
    ) -> io::Result<(Spool, SpoolParts, Recovery)> {
        let lock = lock_dir(dir)?;
        let checkpoint = read_checkpoint(dir)?;
        let (segments, scan) = recover_segments(dir, checkpoint)?;
        let mut next_seq = scan.next_seq.max(checkpoint);
        if idempotency.is_some() {
            next_seq = past_lost_records(dir, next_seq)?;
        }
        let segment_bytes = (max_bytes / 4).clamp(64 * 1024, MAX_SEGMENT_BYTES);
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes,
            durable_seq: AtomicU64::new(next_seq),
            live_records: AtomicU64::new(scan.live_records),
            live_bytes: AtomicU64::new(scan.live_bytes),
            oldest_received_ms: AtomicU64::new(scan.oldest_received_ms),
            checkpoint: AtomicU64::new(checkpoint),
            segments: Mutex::new(segments),
            write_error: Mutex::new(None),
            spare: Mutex::new(false),
            cut_backs: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            drain: DrainRate::new(),
            deleter: spawn_deleter(dir)?,
        });
        let (sender, receiver) = mpsc::channel();
        let (events, events_receiver) = mpsc::channel();
        let writer = writer::spawn(
            shared.clone(),
            receiver,
            events.clone(),
            next_seq,
            scan.tail,
            metrics.spool_fsync_seconds.clone(),
            idempotency,
        )?;
        let recovery = Recovery {
            records: scan.live_records,
            bytes: scan.live_bytes,
            checkpoint,
            truncated_bytes: scan.truncated_bytes,
            absent: scan.absent,
        };
        Ok((
            Spool {
                shared: shared.clone(),
                writer: sender,
            },
            SpoolParts {
                shared,
                writer,
                events,
                events_receiver,
                lock,
            },
            recovery,
        ))
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Appends an encoded record ([`codec::encode`]) and waits until it is fsync'd; returns its
    /// sequence number. `dedup` is remembered in the deduplication window once durable.
    pub async fn append(
        &self,
        frame: Vec<u8>,
        dedup: Option<crate::idempotency::Remembered>,
    ) -> Result<u64, SpoolError> {
        let size = frame.len() as u64;
        if self.shared.live_bytes() + size > self.shared.max_bytes {
            return Err(SpoolError::Full {
                retry_after: self.shared.retry_after_secs(size),
            });
        }
        let (reply, durable) = oneshot::channel();
        self.writer
            .send(WriterMessage::Append(Append {
                frame,
                dedup,
                reply,
            }))
            .map_err(|_| SpoolError::Closed)?;
        durable.await.map_err(|_| SpoolError::Closed)?
    }

    /// Stops accepting appends; the writer finishes what it has and exits.
    pub fn close(&self) {
        let _ = self.writer.send(WriterMessage::Close);
    }
}

/// The parts of an opened spool that start its threads.
pub struct SpoolParts {
    shared: Arc<Shared>,
    writer: std::thread::JoinHandle<()>,
    events: mpsc::Sender<ForwarderEvent>,
    events_receiver: mpsc::Receiver<ForwarderEvent>,
    lock: File,
}

impl SpoolParts {
    /// Starts the forwarder, which publishes spooled records through `publisher`.
    pub fn start_forwarder(
        self,
        publisher: Arc<crate::publisher::Publisher>,
        sources: std::collections::HashMap<String, Arc<crate::metrics::SourceMetrics>>,
        retries: prometheus::IntCounter,
        lost: prometheus::IntCounter,
        dead_letter: DeadLetterRoute,
    ) -> io::Result<SpoolThreads> {
        let forwarder = forwarder::spawn(
            self.shared,
            publisher,
            sources,
            (retries, lost),
            dead_letter,
            self.events,
            self.events_receiver,
        )?;
        Ok(SpoolThreads {
            writer: self.writer,
            forwarder,
            _lock: self.lock,
        })
    }
}

impl SpoolThreads {
    /// Waits for the writer to finish, then lets the forwarder deliver until the spool is empty or
    /// `deadline` passes, and persists the checkpoint. Returns the records left in the spool.
    pub fn shutdown(self, spool: &Spool, deadline: std::time::Instant) -> u64 {
        spool.close();
        let _ = self.writer.join();
        self.forwarder.stop(deadline);
        spool.shared.live_records()
    }
}

/// Creates the directory and takes its lock (one relay per spool); drops a spare left by an
/// earlier run, which may be sized for other settings, and what it left of segments it was
/// deleting.
fn lock_dir(dir: &Path) -> io::Result<File> {
    fs::create_dir_all(dir)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    lock.try_lock().map_err(|_| {
        io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "spool {} is in use by another hookrelay process",
                dir.display()
            ),
        )
    })?;
    remove_retired(dir)?;
    match fs::remove_file(dir.join(SPARE)) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(lock),
    }
}

/// The idempotency log remembers ids only of records that were fsync'd: one remembered beyond
/// the last record found is a record the disk lost. Its sequence number is not reused (the next
/// one is returned), and the forwarder counts the stretch as lost when it gets there.
fn past_lost_records(dir: &Path, next_seq: u64) -> io::Result<u64> {
    match crate::idempotency::highest_spooled_seq(dir)? {
        Some(highest) if highest >= next_seq => {
            tracing::error!(
                from_seq = next_seq,
                to_seq = highest,
                "spool: records acknowledged to senders are not in the spool (the disk lost them); their ids are forgotten so that resends are accepted"
            );
            Ok(highest + 1)
        }
        _ => Ok(next_seq),
    }
}

/// The file name of the spare segment.
const SPARE: &str = "spare";

/// The extension of a delivered segment being deleted ([`delete_in_steps`]).
const RETIRED: &str = "retired";

/// How much of a retired segment one step frees.
const DELETE_STEP: u64 = 4 * 1024 * 1024;

/// Deletes a file by cutting [`DELETE_STEP`] bytes off its end at a time, each cut made durable
/// before the next. Freeing a whole segment at once makes ext4 free all its blocks in one
/// metadata update (one journal commit where there is a journal), and with the `discard` mount
/// option that update, and every `fdatasync` of the spool's writer waiting behind it, lasts as
/// long as the device takes to discard them all: request latency jumped to 50–80 ms for
/// 100–250 ms at each segment deleted while a backlog drained. In steps, each update frees a few
/// MiB (docs/benchmarks.md, *Backlog and recovery*).
fn delete_in_steps(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    let mut len = file.metadata()?.len();
    while len > 0 {
        len = len.saturating_sub(DELETE_STEP);
        file.set_len(len)?;
        file.sync_all()?;
    }
    drop(file);
    fs::remove_file(path)
}

/// Deletes `path` in steps; failing that (no file descriptor left, an I/O error), at once.
fn delete_now(path: &Path) {
    if let Err(error) = delete_in_steps(path) {
        tracing::warn!(%error, path = %path.display(), "spool: cannot delete a delivered segment in steps; deleting it at once");
        if let Err(error) = fs::remove_file(path) {
            tracing::warn!(%error, path = %path.display(), "spool: cannot delete a delivered segment; it goes at the next start");
        }
    }
}

/// The thread that deletes retired segments, at background priority (a deletion waits on the
/// filesystem's metadata updates; the forwarder does not). It stops when the spool is dropped.
fn spawn_deleter(dir: &Path) -> io::Result<mpsc::Sender<PathBuf>> {
    let (sender, receiver) = mpsc::channel::<PathBuf>();
    let dir = dir.to_owned();
    std::thread::Builder::new()
        .name("spool-deleter".to_owned())
        .spawn(move || {
            crate::priority::lower_current_thread();
            for retired in receiver {
                // The rename first: a restart then finds the `.retired` name, never a cut segment.
                if let Err(error) = sync_dir(&dir) {
                    tracing::warn!(%error, "spool: cannot sync the spool directory");
                }
                delete_now(&retired);
            }
        })?;
    Ok(sender)
}

/// Removes what a run that stopped while deleting segments left of them; what cannot be removed
/// is logged and left (it is not a segment).
fn remove_retired(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == RETIRED)
        {
            if let Err(error) = fs::remove_file(&path) {
                tracing::warn!(%error, path = %path.display(), "spool: cannot remove what was left of a delivered segment");
            }
        }
    }
    Ok(())
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

/// Segment files in `dir`, by first sequence number.
fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut segments: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?;
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    segments.sort_unstable();
    Ok(segments)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
