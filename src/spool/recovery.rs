//! Recovery at start: scanning every segment, resynchronising past damaged records, cutting a
//! torn tail back (a copy kept), and reporting the sequence numbers found absent.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::codec::{self, FrameHeader, FRAME_HEADER};
use super::{list_segments, segment_path, writer};

pub(super) struct Scan {
    pub(super) next_seq: u64,
    pub(super) live_records: u64,
    pub(super) live_bytes: u64,
    pub(super) oldest_received_ms: u64,
    pub(super) truncated_bytes: u64,
    pub(super) absent: Vec<std::ops::Range<u64>>,
    pub(super) tail: Tail,
}

/// The end of the last segment as recovery found it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tail {
    /// Where its records end.
    pub(super) records_end: u64,
    /// Up to where zeros follow them.
    pub(super) zeroed_to: u64,
    /// The sequence number after its last record.
    pub(super) end_seq: u64,
}

/// Scans every segment, cuts the last one back to its records, deletes fully delivered segments.
/// Zeros after the last record are the segment's pre-written space ([`writer::PREWRITE_STEP`]),
/// not damage: they are kept. What follows the records of an earlier segment is never read (the
/// next segment starts there) and is left as it is.
pub(super) fn recover_segments(dir: &Path, checkpoint: u64) -> io::Result<(Vec<u64>, Scan)> {
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
        if index + 1 == segments.len() {
            let (tail, cut) = recover_tail(&path, &mut reader, file_len, valid_end, expected)?;
            scan.tail = tail;
            scan.truncated_bytes += cut;
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

/// The end of the last segment: the writer writes zeros ahead of its records to the next step
/// (or the file's end), so anything else there is a torn or corrupt write. Beyond the step, a
/// reused segment holds its old records, which the writer zeroes before it gets there. Returns
/// the tail and the bytes cut off.
fn recover_tail(
    path: &Path,
    reader: &mut BufReader<File>,
    file_len: u64,
    records_end: u64,
    end_seq: u64,
) -> io::Result<(Tail, u64)> {
    let zeroed_to =
        file_len.min((records_end + writer::FRAME_HEADER).next_multiple_of(writer::PREWRITE_STEP));
    if only_zeros(reader, records_end, zeroed_to)? {
        let tail = Tail {
            records_end,
            zeroed_to,
            end_seq,
        };
        return Ok((tail, 0));
    }
    // A write torn by a machine crash (never acknowledged), or acknowledged records the disk
    // damaged with nothing intact after them: the two look alike. Cut them, keep a copy, and
    // forget their ids (see `Recovery::absent`).
    tracing::error!(
        segment = %path.display(),
        from_seq = end_seq,
        "spool: cutting the damaged end of the spool (a write torn by a crash, or records the disk damaged); a copy is kept as .seg.corrupt"
    );
    keep_corrupt_copy(path);
    OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(records_end)?;
    let tail = Tail {
        records_end,
        zeroed_to: records_end,
        end_seq,
    };
    Ok((tail, file_len - records_end))
}

/// Sequence numbers a resynchronisation may skip at once: a frame further ahead is taken for
/// random bytes that happen to parse.
pub(super) const MAX_RESYNC_GAP: u64 = 1 << 32;

/// What [`scan_segment`] found.
pub(super) struct SegmentScan {
    /// Where the last intact record ends.
    pub(super) records_end: u64,
    /// The sequence number after the last intact record.
    pub(super) end_seq: u64,
    /// Records the disk corrupted between intact ones.
    pub(super) gaps: Vec<Gap>,
}

/// Records lost between two intact ones: `from_seq..=to_seq`, in `bytes` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gap {
    pub(super) from_seq: u64,
    pub(super) to_seq: u64,
    pub(super) bytes: u64,
}

/// Reads a segment's records in order, calling `each` for every intact one. Where a record is
/// damaged (bit rot, a bad sector: not the end of the records) it resynchronises at the next
/// intact frame of a later sequence number ([`find_next_frame`]) and reports the records in
/// between as a [`Gap`]. Only damage with nothing intact after it ends the scan: a torn tail.
/// A segment whose records reach `next_first` (the next segment's first record) is complete and
/// not searched further.
pub(super) fn scan_segment(
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
pub(super) fn find_next_frame(
    file: &File,
    from: u64,
    min_seq: u64,
) -> io::Result<Option<(u64, FrameHeader)>> {
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
pub(super) fn keep_corrupt_copy(segment: &Path) {
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
pub(super) fn only_zeros(reader: &mut BufReader<File>, from: u64, to: u64) -> io::Result<bool> {
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
pub(super) fn read_frame(
    reader: &mut impl Read,
    expected: u64,
) -> io::Result<Option<(FrameHeader, Vec<u8>)>> {
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
pub(super) fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<bool> {
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
