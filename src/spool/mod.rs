//! The write-ahead spool: where `ack = "spool"` events become durable before the sender gets its
//! 2xx, and where they wait until Kafka has acknowledged them.
//!
//! Layout of `delivery.spool_dir`:
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: segments of framed records ([`codec`]), named by the sequence
//!   number of their first record; appended by one writer thread, rolled at a size limit;
//! - `checkpoint`: every record with a lower sequence number has been acknowledged by Kafka;
//! - `idempotency.log`: the deduplication window (see [`crate::idempotency`]);
//! - `spare`: a delivered segment kept for reuse as the next segment (see below);
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
//! disks) that stalls the device's next flushes: measured on this project's machine, a group
//! commit of 25 ms after every segment deletion. The writer overwrites a reused segment as it
//! writes a new one, zeros ahead of its records, so its old records are never next to new ones.
//!
//! Recovery after a crash scans every segment. A damaged record with intact ones after it is
//! skipped: the scan resynchronises at the next intact frame ([`find_next_frame`]). In the last
//! segment, the zeros after the records (up to the next 1 MiB step) are kept; anything else there
//! with nothing intact after it is a torn or damaged tail, cut off (a copy kept) and logged. What
//! lies past that step (a reused segment's old records) is zeroed by the writer before its
//! records get there. Sequence numbers that recovery finds absent are reported
//! ([`Recovery::absent`]) so that the ids remembered for them are forgotten.

pub mod codec;
pub mod dead;
mod forwarder;
mod writer;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

pub use codec::{Entry, Stored};
pub use forwarder::{DeadLetterRoute, ForwarderEvent};

use crate::retry::DrainRate;
use codec::{FrameHeader, FRAME_HEADER};

/// Largest segment file; smaller spools roll at a quarter of their limit so that delivered
/// records are reclaimed before the limit is reached.
const MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full")]
    Full { retry_after: u64 },
    #[error("the spool cannot be written: {0}")]
    Io(String),
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

    /// Retires a delivered segment: kept as the spare when there is none, else deleted.
    fn retire(&self, first_seq: u64) -> io::Result<()> {
        let path = self.segment_path(first_seq);
        let mut spare = self
            .spare
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // Not one sized for other settings (a larger spool before a restart).
        let oversized = fs::metadata(&path)?.len() > self.segment_bytes + writer::PREWRITE_STEP;
        if *spare || oversized {
            return fs::remove_file(&path);
        }
        fs::rename(&path, self.dir.join(SPARE))?;
        *spare = true;
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
        // A spare left by an earlier run may be sized for other settings: start without one.
        match fs::remove_file(dir.join(SPARE)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let checkpoint = read_checkpoint(dir)?;
        let (segments, scan) = recover_segments(dir, checkpoint)?;
        let mut next_seq = scan.next_seq.max(checkpoint);
        // The idempotency log remembers ids only of records that were fsync'd: one remembered
        // beyond the last record found is a record the disk lost. Its sequence number is not
        // reused, and the forwarder counts the stretch as lost when it gets there.
        if idempotency.is_some() {
            if let Some(highest) = crate::idempotency::highest_spooled_seq(dir)? {
                if highest >= next_seq {
                    tracing::error!(
                        from_seq = next_seq,
                        to_seq = highest,
                        "spool: records acknowledged to senders are not in the spool (the disk lost them); their ids are forgotten so that resends are accepted"
                    );
                    next_seq = highest + 1;
                }
            }
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

/// The file name of the spare segment.
const SPARE: &str = "spare";

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

/// Size of the checkpoint file: two slots in different 512-byte sectors, so that a write torn by
/// a crash damages at most the slot being written and the other still holds the previous value.
const CHECKPOINT_FILE_LEN: u64 = 1024;
const CHECKPOINT_SLOTS: [u64; 2] = [0, 512];

fn encode_checkpoint(seq: u64) -> [u8; 12] {
    let mut bytes = [0u8; 12];
    bytes[0..8].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&bytes[0..8]);
    bytes[8..12].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode_checkpoint(bytes: &[u8]) -> Option<u64> {
    let seq = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let crc = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
    (crc32fast::hash(&bytes[0..8]) == crc).then_some(seq)
}

/// The highest valid slot of the checkpoint file; 0 when there is none.
fn read_checkpoint(dir: &Path) -> io::Result<u64> {
    let bytes = match fs::read(dir.join("checkpoint")) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let valid: Vec<u64> = CHECKPOINT_SLOTS
        .iter()
        .filter_map(|&offset| decode_checkpoint(bytes.get(offset as usize..)?))
        .collect();
    if valid.is_empty() && bytes.iter().any(|&byte| byte != 0) {
        tracing::error!("spool checkpoint is corrupt; re-sending every spooled record");
    }
    Ok(valid.into_iter().max().unwrap_or(0))
}

/// The checkpoint file, kept open by the forwarder. Each update overwrites one slot in place and
/// `fdatasync`s it: the file never changes size, so the update costs no journal commit (a
/// rename-based update would, and would stall the writer's group commits behind it).
struct CheckpointFile {
    file: File,
    next_slot: usize,
}

impl CheckpointFile {
    fn open(dir: &Path) -> io::Result<CheckpointFile> {
        let path = dir.join("checkpoint");
        let current = read_checkpoint(dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if file.metadata()?.len() != CHECKPOINT_FILE_LEN {
            file.set_len(0)?;
            file.set_len(CHECKPOINT_FILE_LEN)?;
            let mut checkpoint = CheckpointFile { file, next_slot: 0 };
            checkpoint.write(current)?;
            checkpoint.file.sync_all()?;
            sync_dir(dir)?;
            return Ok(checkpoint);
        }
        Ok(CheckpointFile { file, next_slot: 0 })
    }

    fn write(&mut self, seq: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let offset = CHECKPOINT_SLOTS[self.next_slot];
        self.file.write_all_at(&encode_checkpoint(seq), offset)?;
        self.file.sync_data()?;
        self.next_slot = (self.next_slot + 1) % CHECKPOINT_SLOTS.len();
        Ok(())
    }
}

/// Writes a checkpoint (tests and tools; the forwarder keeps a [`CheckpointFile`] open).
#[cfg(test)]
fn write_checkpoint(dir: &Path, seq: u64) -> io::Result<()> {
    CheckpointFile::open(dir)?.write(seq)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

struct Scan {
    next_seq: u64,
    live_records: u64,
    live_bytes: u64,
    oldest_received_ms: u64,
    truncated_bytes: u64,
    absent: Vec<std::ops::Range<u64>>,
    tail: Tail,
}

/// The end of the last segment as recovery found it.
#[derive(Debug, Default, Clone, Copy)]
struct Tail {
    /// Where its records end.
    records_end: u64,
    /// Up to where zeros follow them.
    zeroed_to: u64,
    /// The sequence number after its last record.
    end_seq: u64,
}

/// Scans every segment, cuts the last one back to its records, deletes fully delivered segments.
/// Zeros after the last record are the segment's pre-written space ([`writer::PREWRITE_STEP`]),
/// not damage: they are kept. What follows the records of an earlier segment is never read (the
/// next segment starts there) and is left as it is.
fn recover_segments(dir: &Path, checkpoint: u64) -> io::Result<(Vec<u64>, Scan)> {
    let mut scan = Scan {
        next_seq: 0,
        live_records: 0,
        live_bytes: 0,
        oldest_received_ms: 0,
        truncated_bytes: 0,
        absent: Vec::new(),
        tail: Tail::default(),
    };
    let mut kept = Vec::new();
    let segments = list_segments(dir)?;
    for (index, &first_seq) in segments.iter().enumerate() {
        let path = segment_path(dir, first_seq);
        let file_len = fs::metadata(&path)?.len();
        let next_first = segments.get(index + 1).copied();
        let mut reader = BufReader::new(File::open(&path)?);
        let segment = scan_segment(&mut reader, first_seq, next_first, |header, payload| {
            if header.seq >= checkpoint {
                scan.live_records += 1;
                scan.live_bytes += (FRAME_HEADER + header.len) as u64;
                if scan.oldest_received_ms == 0 {
                    scan.oldest_received_ms = codec::received_ms(payload).unwrap_or(0);
                }
            }
        })?;
        let (valid_end, expected) = (segment.records_end, segment.end_seq);
        for gap in segment.gaps.iter().filter(|gap| gap.to_seq >= checkpoint) {
            tracing::error!(
                segment = %path.display(),
                from_seq = gap.from_seq.max(checkpoint),
                to_seq = gap.to_seq,
                bytes = gap.bytes,
                "spool: records are corrupt (the disk changed written data); the intact records after them are kept"
            );
            scan.absent.push(gap.from_seq..gap.to_seq + 1);
        }
        if !segment.gaps.is_empty() {
            keep_corrupt_copy(&path);
        }
        let last = index + 1 == segments.len();
        if last {
            // The writer writes zeros ahead of its records to the next step (or the file's end):
            // anything else there is a torn or corrupt write. Beyond the step, a reused segment
            // holds its old records, which the writer zeroes before it gets there.
            let zeroed_to = file_len
                .min((valid_end + writer::FRAME_HEADER).next_multiple_of(writer::PREWRITE_STEP));
            if only_zeros(&mut reader, valid_end, zeroed_to)? {
                scan.tail = Tail {
                    records_end: valid_end,
                    zeroed_to,
                    end_seq: expected,
                };
            } else {
                // A write torn by a machine crash (never acknowledged), or acknowledged records
                // the disk damaged with nothing intact after them: the two look alike. Cut them,
                // keep a copy, and forget their ids (see `Recovery::absent`).
                let cut = file_len - valid_end;
                tracing::error!(
                    segment = %path.display(),
                    from_seq = expected,
                    "spool: cutting the damaged end of the spool (a write torn by a crash, or records the disk damaged); a copy is kept as .seg.corrupt"
                );
                keep_corrupt_copy(&path);
                OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(valid_end)?;
                scan.truncated_bytes += cut;
                scan.tail = Tail {
                    records_end: valid_end,
                    zeroed_to: valid_end,
                    end_seq: expected,
                };
            }
        }
        scan.next_seq = scan.next_seq.max(expected);
        if let Some(next) = next_first.filter(|&next| next > expected && next > checkpoint) {
            tracing::error!(segment = %path.display(), missing_from = expected, missing_to = next - 1, "spool: records are missing between two segments (the disk lost written data)");
            scan.absent.push(expected..next);
        }
        let fully_delivered = next_first.is_some_and(|next| next <= checkpoint)
            || (next_first.is_none() && expected <= checkpoint && expected > first_seq);
        if fully_delivered && next_first.is_some() {
            fs::remove_file(&path)?;
        } else {
            kept.push(first_seq);
        }
    }
    if !segments.is_empty() {
        // Nothing after the last intact record is in the spool.
        scan.absent.push(scan.tail.end_seq..u64::MAX);
    }
    Ok((kept, scan))
}

/// Sequence numbers a resynchronisation may skip at once: a frame further ahead is taken for
/// random bytes that happen to parse.
const MAX_RESYNC_GAP: u64 = 1 << 32;

/// What [`scan_segment`] found.
struct SegmentScan {
    /// Where the last intact record ends.
    records_end: u64,
    /// The sequence number after the last intact record.
    end_seq: u64,
    /// Records the disk corrupted between intact ones.
    gaps: Vec<Gap>,
}

/// Records lost between two intact ones: `from_seq..=to_seq`, in `bytes` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    from_seq: u64,
    to_seq: u64,
    bytes: u64,
}

/// Reads a segment's records in order, calling `each` for every intact one. Where a record is
/// damaged (bit rot, a bad sector: not the end of the records) it resynchronises at the next
/// intact frame of a later sequence number ([`find_next_frame`]) and reports the records in
/// between as a [`Gap`]. Only damage with nothing intact after it ends the scan: a torn tail.
/// A segment whose records reach `next_first` (the next segment's first record) is complete and
/// not searched further.
fn scan_segment(
    reader: &mut BufReader<File>,
    first_seq: u64,
    next_first: Option<u64>,
    mut each: impl FnMut(&FrameHeader, &[u8]),
) -> io::Result<SegmentScan> {
    let mut scan = SegmentScan {
        records_end: 0,
        end_seq: first_seq,
        gaps: Vec::new(),
    };
    loop {
        while let Some((header, payload)) = read_frame(reader, scan.end_seq)? {
            each(&header, &payload);
            scan.records_end += (FRAME_HEADER + header.len) as u64;
            scan.end_seq += 1;
        }
        if next_first.is_some_and(|next| scan.end_seq >= next) {
            return Ok(scan);
        }
        let Some((offset, header)) =
            find_next_frame(reader.get_ref(), scan.records_end + 1, scan.end_seq)?
        else {
            return Ok(scan);
        };
        if next_first.is_some_and(|next| header.seq >= next) {
            return Ok(scan);
        }
        scan.gaps.push(Gap {
            from_seq: scan.end_seq,
            to_seq: header.seq - 1,
            bytes: offset - scan.records_end,
        });
        reader.seek(SeekFrom::Start(offset))?;
        scan.records_end = offset;
        scan.end_seq = header.seq;
    }
}

/// The first intact frame at or after byte `from` whose sequence number is at least `min_seq`
/// (and less than [`MAX_RESYNC_GAP`] beyond it): a header that parses, and a payload that matches
/// its CRC. A byte-by-byte search, run only where a record is damaged or the records end.
fn find_next_frame(file: &File, from: u64, min_seq: u64) -> io::Result<Option<(u64, FrameHeader)>> {
    use std::os::unix::fs::FileExt;
    let file_len = file.metadata()?.len();
    let mut window = vec![0u8; 1024 * 1024];
    let mut start = from;
    while start + FRAME_HEADER as u64 <= file_len {
        let want = window
            .len()
            .min(usize::try_from(file_len - start).unwrap_or(usize::MAX));
        file.read_exact_at(&mut window[..want], start)?;
        let chunk = &window[..want];
        for index in 0..=chunk.len() - FRAME_HEADER {
            let Some(header) = chunk[index..index + FRAME_HEADER]
                .try_into()
                .ok()
                .and_then(FrameHeader::parse)
            else {
                continue;
            };
            let offset = start + index as u64;
            let plausible = header.seq >= min_seq
                && header.seq - min_seq < MAX_RESYNC_GAP
                && offset + (FRAME_HEADER + header.len) as u64 <= file_len;
            if !plausible {
                continue;
            }
            let mut payload = vec![0u8; header.len];
            file.read_exact_at(&mut payload, offset + FRAME_HEADER as u64)?;
            if header.verifies(&payload) {
                return Ok(Some((offset, header)));
            }
        }
        start += (chunk.len() - FRAME_HEADER + 1) as u64;
    }
    Ok(None)
}

/// Keeps an fsync'd copy `NNN.seg.corrupt` of a segment the disk damaged (once), for whoever
/// wants to salvage records by hand: the segment itself is reused once delivery moves past it.
fn keep_corrupt_copy(segment: &Path) {
    let copy = segment.with_extension("seg.corrupt");
    if copy.exists() {
        return;
    }
    let copied = fs::copy(segment, &copy).and_then(|_| File::open(&copy)?.sync_all());
    if let Err(error) = copied {
        tracing::warn!(%error, "spool: cannot keep a copy of a corrupt segment");
        let _ = fs::remove_file(&copy);
    }
}

/// Whether the bytes from `from` to `to` are all zeros (or past the file's end).
fn only_zeros(reader: &mut BufReader<File>, from: u64, to: u64) -> io::Result<bool> {
    reader.seek(SeekFrom::Start(from))?;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut left = to.saturating_sub(from);
    while left > 0 {
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        match reader.read(&mut chunk[..want]) {
            Ok(0) => return Ok(true),
            Ok(read) if chunk[..read].iter().any(|&byte| byte != 0) => return Ok(false),
            Ok(read) => left -= read as u64,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

/// Reads one frame whose sequence number must be `expected`; `None` at the end of valid data.
fn read_frame(reader: &mut impl Read, expected: u64) -> io::Result<Option<(FrameHeader, Vec<u8>)>> {
    let mut head = [0u8; FRAME_HEADER];
    if !read_full(reader, &mut head)? {
        return Ok(None);
    }
    let Some(header) = FrameHeader::parse(&head) else {
        return Ok(None);
    };
    if header.seq != expected {
        return Ok(None);
    }
    let mut payload = vec![0u8; header.len];
    if !read_full(reader, &mut payload)? || !header.verifies(&payload) {
        return Ok(None);
    }
    Ok(Some((header, payload)))
}

/// `read_exact` that reports a short read as `false` instead of an error.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => return Ok(false),
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

/// `hookrelay spool status`: what a spool directory holds, read without modifying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub records: u64,
    /// Undelivered records the disk corrupted (skipped when the forwarder gets there).
    pub corrupt_records: u64,
    pub bytes: u64,
    pub segments: usize,
    pub checkpoint: u64,
    pub oldest_age: Option<Duration>,
}

impl Status {
    pub fn read(dir: &Path) -> io::Result<Status> {
        let checkpoint = read_checkpoint(dir)?;
        let segments = list_segments(dir)?;
        let mut status = Status {
            records: 0,
            corrupt_records: 0,
            bytes: 0,
            segments: segments.len(),
            checkpoint,
            oldest_age: None,
        };
        for (index, &first_seq) in segments.iter().enumerate() {
            let mut reader = BufReader::new(File::open(segment_path(dir, first_seq))?);
            let next_first = segments.get(index + 1).copied();
            let scan = scan_segment(&mut reader, first_seq, next_first, |header, payload| {
                if header.seq >= checkpoint {
                    status.records += 1;
                    status.bytes += (FRAME_HEADER + header.len) as u64;
                    if status.oldest_age.is_none() {
                        status.oldest_age = codec::received_ms(payload).map(|ms| {
                            SystemTime::now()
                                .duration_since(UNIX_EPOCH + Duration::from_millis(ms))
                                .unwrap_or(Duration::ZERO)
                        });
                    }
                }
            })?;
            status.corrupt_records += scan
                .gaps
                .iter()
                .filter(|gap| gap.to_seq >= checkpoint)
                .map(|gap| gap.to_seq + 1 - gap.from_seq.max(checkpoint))
                .sum::<u64>();
        }
        Ok(status)
    }
}

/// Sequential reader of spooled records, for the forwarder.
struct Reader {
    shared: Arc<Shared>,
    segment: u64,
    offset: u64,
    next_seq: u64,
    file: Option<BufReader<File>>,
    /// [`Shared::cut_backs`] when this reader last dropped its buffer.
    cut_backs: u64,
}

/// A record as read by [`Reader::next`].
struct Frame {
    location: Location,
    seq: u64,
    payload: Vec<u8>,
    size: u64,
}

/// Where a record starts on disk.
#[derive(Debug, Clone, Copy)]
struct Location {
    segment: u64,
    offset: u64,
}

impl Reader {
    fn new(shared: Arc<Shared>, segments: &[u64], checkpoint: u64) -> io::Result<Reader> {
        let segment = segments
            .iter()
            .rev()
            .find(|&&first| first <= checkpoint)
            .or(segments.first())
            .copied()
            .unwrap_or(checkpoint);
        let cut_backs = shared.cut_backs.load(Ordering::Acquire);
        let mut reader = Reader {
            shared,
            segment,
            offset: 0,
            next_seq: segment,
            file: None,
            cut_backs,
        };
        // Skip the delivered records at the start of the segment (and any the disk damaged).
        while reader.next_seq < checkpoint {
            if reader.next()?.is_none() {
                match reader.lost_until()? {
                    Some((location, seq)) => reader.seek(location, seq),
                    None => break,
                }
            }
        }
        Ok(reader)
    }

    /// After [`Reader::next`] found no record where durable record `next_seq` should start:
    /// where the next intact record is, when the records from `next_seq` up to it are lost (the
    /// disk corrupted or lost written data). That is: a fresh read (not what may be buffered from
    /// before the record was written) finds no valid record there either; then the next intact
    /// frame of this segment ([`find_next_frame`]), else the start of the next segment.
    fn lost_until(&mut self) -> io::Result<Option<(Location, u64)>> {
        let position = (
            Location {
                segment: self.segment,
                offset: self.offset,
            },
            self.next_seq,
        );
        self.file = None;
        let found = self.next()?.is_some();
        self.seek(position.0, position.1);
        if found {
            return Ok(None);
        }
        let later = self
            .shared
            .segments
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .iter()
            .copied()
            .find(|&first| first > self.segment)
            .filter(|&later| later > self.next_seq);
        match File::open(self.shared.segment_path(self.segment)) {
            Ok(file) => {
                if let Some((offset, header)) =
                    find_next_frame(&file, self.offset + 1, self.next_seq)?
                {
                    if later.is_none_or(|later| header.seq < later) {
                        let location = Location {
                            segment: self.segment,
                            offset,
                        };
                        return Ok(Some((location, header.seq)));
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        Ok(later.map(|later| {
            let location = Location {
                segment: later,
                offset: 0,
            };
            (location, later)
        }))
    }

    /// Record `seq`'s payload read afresh at `location` (without moving this reader); `None`
    /// when it is not intact there.
    fn read_at(&self, location: Location, seq: u64) -> io::Result<Option<Vec<u8>>> {
        let mut file = match File::open(self.shared.segment_path(location.segment)) {
            Ok(file) => BufReader::new(file),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        file.seek(SeekFrom::Start(location.offset))?;
        Ok(read_frame(&mut file, seq)?.map(|(_, payload)| payload))
    }

    /// Makes record `seq`, which starts at `location`, the next one read (the file is opened
    /// then, so a seek itself cannot fail).
    fn seek(&mut self, location: Location, seq: u64) {
        self.file = None;
        self.segment = location.segment;
        self.offset = location.offset;
        self.next_seq = seq;
    }

    /// The next record's location, sequence number, verified payload and framed size, if it is
    /// on disk; callers only ask for durable sequence numbers.
    fn next(&mut self) -> io::Result<Option<Frame>> {
        // Callers have seen the record's sequence number durable (an acquire load), which the
        // writer publishes after any cut back before it: this load sees that cut back.
        let cut_backs = self.shared.cut_backs.load(Ordering::Acquire);
        if cut_backs != self.cut_backs {
            self.cut_backs = cut_backs;
            if let Some(file) = self.file.as_mut() {
                file.seek(SeekFrom::Start(self.offset))?;
            }
        }
        for _ in 0..2 {
            if self.file.is_none() {
                match File::open(self.shared.segment_path(self.segment)) {
                    Ok(file) => {
                        let mut file = BufReader::new(file);
                        file.seek(SeekFrom::Start(self.offset))?;
                        self.file = Some(file);
                    }
                    Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(error) => return Err(error),
                }
            }
            let Some(file) = self.file.as_mut() else {
                return Ok(None);
            };
            if let Some((header, payload)) = read_frame(file, self.next_seq)? {
                let location = Location {
                    segment: self.segment,
                    offset: self.offset,
                };
                let size = (FRAME_HEADER + header.len) as u64;
                self.offset += size;
                self.next_seq += 1;
                return Ok(Some(Frame {
                    location,
                    seq: header.seq,
                    payload,
                    size,
                }));
            }
            // The end of this segment: the next record starts the next segment, if it exists.
            if self.segment == self.next_seq || !self.shared.segment_path(self.next_seq).exists() {
                // Re-read from the same offset next time (the writer may not have rolled yet).
                // Seeking drops the buffer, which may hold zeros read ahead of the writer.
                file.seek(SeekFrom::Start(self.offset))?;
                return Ok(None);
            }
            self.segment = self.next_seq;
            self.offset = 0;
            self.file = None;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
