//! The local dead-letter directory, `dead/` in the spool directory: where a spooled record goes
//! when Kafka refused it for good (too large, topic gone, not authorized, invalid) and the
//! dead-letter topic could not take it either, or none is configured. Nothing the relay answered
//! 2xx is dropped: it is here until an operator retries or drops it
//! (`hookrelay spool dead list|show|retry|drop`).
//!
//! One file per record, `NNNNNNNNNNNNNNNNNNNN.rec` (its spool sequence number): a spool frame
//! ([`codec`]) whose headers carry `hookrelay_dead_reason`, written to a temporary file,
//! fsync'd, renamed into place and the directory fsync'd, so a crash leaves either the whole
//! record or none (and then the spool still holds it: its checkpoint has not moved past it).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::codec::{self, Entry, FrameHeader, Stored, FRAME_HEADER};

/// The dead-letter directory of a spool.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    dir: PathBuf,
}

/// A record read back from the directory.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub stored: Stored,
    /// Why it is here (`hookrelay_dead_reason`).
    pub reason: String,
}

impl DeadLetters {
    pub fn new(spool_dir: &Path) -> DeadLetters {
        DeadLetters {
            dir: spool_dir.join("dead"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.rec"))
    }

    /// Stores `entry` (whose headers include the reason) as record `seq`, durably.
    pub fn write(&self, seq: u64, entry: &Entry<'_>) -> io::Result<()> {
        let mut frame = codec::encode(entry);
        codec::seal(&mut frame, seq);
        fs::create_dir_all(&self.dir)?;
        let path = self.path(seq);
        let temporary = path.with_extension("rec.tmp");
        let written = File::create(&temporary).and_then(|mut file| {
            file.write_all(&frame)?;
            file.sync_all()
        });
        if let Err(error) = written.and_then(|()| fs::rename(&temporary, &path)) {
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        File::open(&self.dir)?.sync_all()
    }

    /// The sequence numbers of the records here, ascending; none when the directory does not
    /// exist.
    pub fn list(&self) -> io::Result<Vec<u64>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut seqs: Vec<u64> = entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name();
                name.to_str()?.strip_suffix(".rec")?.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Record `seq`; an error names what is wrong with a file that is not a valid record.
    pub fn read(&self, seq: u64) -> io::Result<DeadLetter> {
        let bytes = fs::read(self.path(seq))?;
        let invalid = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {what}", self.path(seq).display()),
            )
        };
        let header = bytes
            .get(..FRAME_HEADER)
            .and_then(|head| head.try_into().ok())
            .and_then(FrameHeader::parse)
            .ok_or_else(|| invalid("no record header"))?;
        let payload = &bytes[FRAME_HEADER..];
        if payload.len() != header.len || !header.verifies(payload) {
            return Err(invalid("damaged (checksum mismatch)"));
        }
        let stored = codec::decode(header.seq, payload)
            .ok_or_else(|| invalid("not a record this version can read"))?;
        let reason = stored
            .headers
            .iter()
            .find(|(name, _)| name == crate::record::DEAD_REASON_HEADER)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
            .unwrap_or_default();
        Ok(DeadLetter { stored, reason })
    }

    /// Deletes record `seq`.
    pub fn remove(&self, seq: u64) -> io::Result<()> {
        fs::remove_file(self.path(seq))?;
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_dead_letter_survives_the_round_trip_and_can_be_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let dead = DeadLetters::new(dir.path());
        assert!(dead.list().unwrap().is_empty(), "no directory: no records");
        let received = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let headers: &[(&str, &[u8])] = &[
            ("ce_id", b"id-1"),
            (crate::record::DEAD_REASON_HEADER, b"record_too_large"),
        ];
        dead.write(
            42,
            &Entry {
                received,
                source: "tagmango",
                topic: "webhooks.tagmango.x",
                key: b"k",
                headers,
                value: b"{\"a\":1}",
            },
        )
        .unwrap();
        assert_eq!(dead.list().unwrap(), vec![42]);
        let letter = dead.read(42).unwrap();
        assert_eq!(letter.reason, "record_too_large");
        assert_eq!(letter.stored.topic, "webhooks.tagmango.x");
        assert_eq!(letter.stored.value, b"{\"a\":1}");
        assert_eq!(letter.stored.received_ms, 1_700_000_000_123);

        let mut bytes = fs::read(dead.path(42)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(dead.path(42), bytes).unwrap();
        let error = dead.read(42).unwrap_err();
        assert!(error.to_string().contains("damaged"), "{error}");

        dead.remove(42).unwrap();
        assert!(dead.list().unwrap().is_empty());
    }
}
