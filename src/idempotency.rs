//! The deduplication window: an event id seen again within its source's `idempotency.ttl_secs`
//! is answered 200 `"duplicate"` and not published again.
//!
//! Memory is bounded per source (`idempotency.max_entries`, least recently used first out, by
//! `quick_cache`). An id is remembered only once its event reached the durability point, so a
//! request that failed with 503 can be retried; two identical requests racing each other may both
//! be published (at-least-once, same `ce_id`).
//!
//! In spool mode the window survives a restart: the spool writer appends each remembered id to
//! `idempotency.log` in the spool directory (written with the group commit, not fsync'd: losing
//! the last entries in a machine crash only risks a duplicate record). The log is reloaded and
//! compacted at start, and rotated when it grows past four times the window's capacity. Each
//! entry carries the spool sequence number of its record: when recovery had to cut records off
//! the spool's end (a torn write, or the disk damaged them), their ids are forgotten, so that a
//! resend is accepted rather than answered "duplicate" for an event that is not in the spool.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quick_cache::sync::Cache;

use crate::config::Config;

/// An accepted event to remember.
#[derive(Debug, Clone)]
pub struct Remembered {
    source: String,
    id: String,
    expires_ms: u64,
    /// The spool sequence number of its record; [`NOT_SPOOLED`] for other ack modes.
    seq: u64,
}

/// The `seq` of an entry whose record is not in the spool.
pub const NOT_SPOOLED: u64 = u64::MAX;

/// The first bytes of a log whose entries carry a sequence number (the first logs had none).
const LOG_MAGIC: &[u8; 8] = b"HRIDLOG2";

impl Remembered {
    /// The spool sequence number its record got.
    pub fn spooled_as(&mut self, seq: u64) {
        self.seq = seq;
    }
}

struct Window {
    cache: Cache<String, u64>,
}

pub struct Idempotency {
    windows: HashMap<String, Window>,
    log: Mutex<Option<Log>>,
    rotate_after: u64,
}

struct Log {
    path: PathBuf,
    writer: BufWriter<File>,
    entries: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl Idempotency {
    /// Windows for the sources whose event ids repeat for a repeated event.
    pub fn new(config: &Config) -> Idempotency {
        let mut windows = HashMap::new();
        let mut capacity = 0u64;
        for source in &config.sources {
            if source.identity.is_none() {
                continue;
            }
            if let Some(window) = &source.dedup {
                capacity += window.max_entries as u64;
                windows.insert(
                    source.name.as_str().to_owned(),
                    Window {
                        cache: Cache::new(window.max_entries.max(1)),
                    },
                );
            }
        }
        Idempotency {
            windows,
            log: Mutex::new(None),
            rotate_after: capacity.max(1024) * 4,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Whether `id` was accepted for `source` within the window.
    pub fn is_duplicate(&self, source: &str, id: &str) -> bool {
        self.windows
            .get(source)
            .and_then(|window| window.cache.get(id))
            .is_some_and(|expires_ms| expires_ms > now_ms())
    }

    /// What to remember, for `ttl`, once the event is durable; `None` for sources without a
    /// window and for a zero `ttl`.
    pub fn entry(&self, source: &str, id: &str, ttl: Duration) -> Option<Remembered> {
        if ttl.is_zero() || !self.windows.contains_key(source) {
            return None;
        }
        Some(Remembered {
            source: source.to_owned(),
            id: id.to_owned(),
            expires_ms: now_ms() + ttl.as_millis() as u64,
            seq: NOT_SPOOLED,
        })
    }

    /// Adds an accepted event to the window (and to the log, in spool mode).
    pub fn remember(&self, remembered: Remembered) {
        let mut log = self.log.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(log) = log.as_mut() {
            if let Err(error) = log.append(&remembered, self.rotate_after) {
                tracing::warn!(%error, "cannot write the idempotency log");
            }
        }
        drop(log);
        if let Some(window) = self.windows.get(&remembered.source) {
            window.cache.insert(remembered.id, remembered.expires_ms);
        }
    }

    /// Hands buffered log entries to the operating system.
    pub fn flush_log(&self) {
        let mut log = self.log.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(log) = log.as_mut() {
            if let Err(error) = log.writer.flush() {
                tracing::warn!(%error, "cannot write the idempotency log");
            }
        }
    }

    /// Loads the unexpired entries of `dir/idempotency.log` (and its rotated predecessor), writes
    /// them back compacted, and keeps appending there. Entries of spooled records whose sequence
    /// number is in `absent` are dropped: recovery found those records damaged or missing, so a
    /// resend must be accepted. Returns how many were loaded.
    pub fn open_log(&self, dir: &Path, absent: &[std::ops::Range<u64>]) -> io::Result<usize> {
        let path = dir.join("idempotency.log");
        let old = dir.join("idempotency.log.old");
        let now = now_ms();
        let forgotten = |entry: &Remembered| {
            entry.seq != NOT_SPOOLED && absent.iter().any(|range| range.contains(&entry.seq))
        };
        let mut live = Vec::new();
        for file in [&old, &path] {
            match File::open(file) {
                Ok(file) => read_entries(BufReader::new(file), &mut |entry| {
                    if entry.expires_ms > now
                        && self.windows.contains_key(&entry.source)
                        && !forgotten(&entry)
                    {
                        live.push(entry);
                    }
                })?,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        let temporary = dir.join("idempotency.log.tmp");
        let mut writer = BufWriter::new(File::create(&temporary)?);
        writer.write_all(LOG_MAGIC)?;
        for entry in &live {
            write_entry(&mut writer, entry)?;
        }
        writer.flush()?;
        writer.get_ref().sync_data()?;
        fs::rename(&temporary, &path)?;
        let _ = fs::remove_file(&old);
        let loaded = live.len();
        let entries = loaded as u64;
        for entry in live {
            if let Some(window) = self.windows.get(&entry.source) {
                window.cache.insert(entry.id, entry.expires_ms);
            }
        }
        let file = OpenOptions::new().append(true).open(&path)?;
        *self.log.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(Log {
            path,
            writer: BufWriter::new(file),
            entries,
        });
        Ok(loaded)
    }
}

/// The highest spool sequence number the log in `dir` remembers an id for: a record the relay
/// acknowledged (ids are remembered after their fsync), which recovery may not find if the disk
/// lost it. Read-only.
pub fn highest_spooled_seq(dir: &Path) -> io::Result<Option<u64>> {
    let mut highest = None;
    for name in ["idempotency.log.old", "idempotency.log"] {
        match File::open(dir.join(name)) {
            Ok(file) => read_entries(BufReader::new(file), &mut |entry| {
                if entry.seq != NOT_SPOOLED {
                    highest = highest.max(Some(entry.seq));
                }
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(highest)
}

impl Log {
    fn append(&mut self, entry: &Remembered, rotate_after: u64) -> io::Result<()> {
        if self.entries >= rotate_after {
            self.writer.flush()?;
            let old = self.path.with_extension("log.old");
            fs::rename(&self.path, old)?;
            self.writer = BufWriter::new(File::create(&self.path)?);
            self.writer.write_all(LOG_MAGIC)?;
            self.entries = 0;
        }
        write_entry(&mut self.writer, entry)?;
        self.entries += 1;
        Ok(())
    }
}

/// `expires_ms: u64 | seq: u64 | source_len: u16 | source | id_len: u16 | id`, little endian,
/// after [`LOG_MAGIC`].
fn write_entry(writer: &mut impl Write, entry: &Remembered) -> io::Result<()> {
    let source = &entry.source.as_bytes()[..entry.source.len().min(u16::MAX as usize)];
    let id = &entry.id.as_bytes()[..entry.id.len().min(u16::MAX as usize)];
    writer.write_all(&entry.expires_ms.to_le_bytes())?;
    writer.write_all(&entry.seq.to_le_bytes())?;
    writer.write_all(&(source.len() as u16).to_le_bytes())?;
    writer.write_all(source)?;
    writer.write_all(&(id.len() as u16).to_le_bytes())?;
    writer.write_all(id)
}

/// Reads entries until the end or the first torn one. A log without [`LOG_MAGIC`] is one of the
/// first format (no sequence numbers: its entries are never forgotten).
fn read_entries(mut reader: impl Read, each: &mut impl FnMut(Remembered)) -> io::Result<()> {
    let mut first = [0u8; 8];
    if reader.read_exact(&mut first).is_err() {
        return Ok(());
    }
    let with_seq = &first == LOG_MAGIC;
    let mut pending = (!with_seq).then_some(first);
    loop {
        let expires = match pending.take() {
            Some(expires) => expires,
            None => {
                let mut expires = [0u8; 8];
                if reader.read_exact(&mut expires).is_err() {
                    return Ok(());
                }
                expires
            }
        };
        let mut seq = NOT_SPOOLED.to_le_bytes();
        if with_seq && reader.read_exact(&mut seq).is_err() {
            return Ok(());
        }
        let Some(source) = read_string(&mut reader) else {
            return Ok(());
        };
        let Some(id) = read_string(&mut reader) else {
            return Ok(());
        };
        each(Remembered {
            source,
            id,
            expires_ms: u64::from_le_bytes(expires),
            seq: u64::from_le_bytes(seq),
        });
    }
}

fn read_string(reader: &mut impl Read) -> Option<String> {
    let mut len = [0u8; 2];
    reader.read_exact(&mut len).ok()?;
    let mut bytes = vec![0u8; usize::from(u16::from_le_bytes(len))];
    reader.read_exact(&mut bytes).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, seq: u64) -> Remembered {
        Remembered {
            source: "tagmango".to_owned(),
            id: id.to_owned(),
            expires_ms: now_ms() + 60_000,
            seq,
        }
    }

    fn read(path: &Path) -> Vec<(String, u64)> {
        let mut entries = Vec::new();
        read_entries(BufReader::new(File::open(path).unwrap()), &mut |entry| {
            entries.push((entry.id, entry.seq))
        })
        .unwrap();
        entries
    }

    #[test]
    fn logs_of_the_first_format_are_read_and_their_entries_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idempotency.log");
        let mut old = Vec::new();
        for id in ["a", "b"] {
            let entry = entry(id, 0);
            old.extend_from_slice(&entry.expires_ms.to_le_bytes());
            old.extend_from_slice(&(entry.source.len() as u16).to_le_bytes());
            old.extend_from_slice(entry.source.as_bytes());
            old.extend_from_slice(&(entry.id.len() as u16).to_le_bytes());
            old.extend_from_slice(entry.id.as_bytes());
        }
        fs::write(&path, old).unwrap();
        assert_eq!(
            read(&path),
            vec![("a".to_owned(), NOT_SPOOLED), ("b".to_owned(), NOT_SPOOLED)]
        );
    }

    #[test]
    fn entries_of_records_cut_off_the_spool_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idempotency.log");
        let mut file = Vec::new();
        file.extend_from_slice(LOG_MAGIC);
        for entry in [
            entry("kept", 3),
            entry("cut", 4),
            entry("memory", NOT_SPOOLED),
        ] {
            write_entry(&mut file, &entry).unwrap();
        }
        fs::write(&path, file).unwrap();
        let mut windows = HashMap::new();
        windows.insert(
            "tagmango".to_owned(),
            Window {
                cache: Cache::new(10),
            },
        );
        let idempotency = Idempotency {
            windows,
            log: Mutex::new(None),
            rotate_after: 1024,
        };
        let absent = [1..2, 4..u64::MAX];
        assert_eq!(idempotency.open_log(dir.path(), &absent).unwrap(), 2);
        assert!(idempotency.is_duplicate("tagmango", "kept"));
        assert!(idempotency.is_duplicate("tagmango", "memory"));
        assert!(!idempotency.is_duplicate("tagmango", "cut"));
        assert!(!idempotency.is_duplicate("tagmango", "damaged"));
        assert_eq!(
            read(&path),
            vec![("kept".to_owned(), 3), ("memory".to_owned(), NOT_SPOOLED)]
        );
    }
}
