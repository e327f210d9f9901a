//! `hookrelay spool status`: what a spool directory holds, read without modifying it (safe while
//! the relay serves).

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::checkpoint::read_checkpoint;
use super::codec::{self, FRAME_HEADER};
use super::recovery::scan_segment;
use super::{list_segments, segment_path};

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
