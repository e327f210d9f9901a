//! The forwarder's sequential reader of spooled records: across segments, past damaged frames
//! (counted lost), and back to a record to send it again.

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::codec::FRAME_HEADER;
use super::recovery::{find_next_frame, read_frame};
use super::Shared;

/// Sequential reader of spooled records, for the forwarder.
pub(super) struct Reader {
    pub(super) shared: Arc<Shared>,
    pub(super) segment: u64,
    pub(super) offset: u64,
    pub(super) next_seq: u64,
    pub(super) file: Option<BufReader<File>>,
    /// [`Shared::cut_backs`] when this reader last dropped its buffer.
    pub(super) cut_backs: u64,
}

/// A record as read by [`Reader::next`].
pub(super) struct Frame {
    pub(super) location: Location,
    pub(super) seq: u64,
    pub(super) payload: Vec<u8>,
    pub(super) size: u64,
}

/// Where a record starts on disk.
#[derive(Debug, Clone, Copy)]
pub(super) struct Location {
    pub(super) segment: u64,
    pub(super) offset: u64,
}

impl Reader {
    pub(super) fn new(
        shared: Arc<Shared>,
        segments: &[u64],
        checkpoint: u64,
    ) -> io::Result<Reader> {
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
    pub(super) fn lost_until(&mut self) -> io::Result<Option<(Location, u64)>> {
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
    pub(super) fn read_at(&self, location: Location, seq: u64) -> io::Result<Option<Vec<u8>>> {
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
    pub(super) fn seek(&mut self, location: Location, seq: u64) {
        self.file = None;
        self.segment = location.segment;
        self.offset = location.offset;
        self.next_seq = seq;
    }

    /// The next record's location, sequence number, verified payload and framed size, if it is
    /// on disk; callers only ask for durable sequence numbers.
    pub(super) fn next(&mut self) -> io::Result<Option<Frame>> {
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
