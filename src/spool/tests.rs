//! The spool's durability promise, tested on its own: every appended (acknowledged) record is
//! recovered after any crash, whatever a torn write left behind.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;

use std::io::BufReader;

use super::checkpoint::write_checkpoint;
use super::codec::FRAME_HEADER;
use super::recovery::read_frame;
use super::*;
use crate::metrics::Metrics;

fn entry_frame(value: &[u8]) -> Vec<u8> {
    codec::encode(&Entry {
        received: UNIX_EPOCH + Duration::from_millis(1_000),
        source: "s",
        topic: "t",
        key: b"k",
        headers: &[("ce_id", b"id")],
        value,
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Appends `values` (each acknowledged), then closes the spool as a crash would (no shutdown).
fn append_all(dir: &Path, max_bytes: u64, values: &[Vec<u8>]) -> Vec<u64> {
    let (spool, parts, _) = Spool::open(dir, max_bytes, &Metrics::new(), None).unwrap();
    let seqs = runtime().block_on(async {
        let mut seqs = Vec::new();
        for value in values {
            seqs.push(spool.append(entry_frame(value), None).await.unwrap());
        }
        seqs
    });
    spool.close();
    let _ = parts.writer.join();
    seqs
}

/// Every record from the checkpoint on, in order, as the forwarder would read them.
fn read_all(dir: &Path) -> (Recovery, Vec<Stored>) {
    let (spool, parts, recovery) = Spool::open(dir, u64::MAX / 2, &Metrics::new(), None).unwrap();
    let segments = spool.shared.segments.lock().unwrap().clone();
    let mut reader = Reader::new(spool.shared.clone(), &segments, recovery.checkpoint).unwrap();
    let mut records = Vec::new();
    while reader.next_seq < spool.shared.durable_seq() {
        match reader.next().unwrap() {
            Some(frame) => {
                records.push(codec::decode(frame.seq, &frame.payload).expect("decodable record"))
            }
            // Past records the disk damaged, as the forwarder does.
            None => match reader.lost_until().unwrap() {
                Some((location, seq)) => reader.seek(location, seq),
                None => break,
            },
        }
    }
    spool.close();
    let _ = parts.writer.join();
    (recovery, records)
}

#[test]
fn appended_records_are_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Vec<u8>> = (0..50)
        .map(|n| format!("{{\"n\":{n}}}").into_bytes())
        .collect();
    let seqs = append_all(dir.path(), 1 << 20, &values);
    assert_eq!(seqs, (0..50).collect::<Vec<u64>>());
    let (recovery, records) = read_all(dir.path());
    assert_eq!(recovery.records, 50);
    assert_eq!(recovery.truncated_bytes, 0);
    let read: Vec<Vec<u8>> = records.into_iter().map(|record| record.value).collect();
    assert_eq!(read, values);
}

/// Where the records of a segment end: the segment's zeros, if any, start there.
fn records_end(dir: &Path, first_seq: u64) -> u64 {
    let mut reader = BufReader::new(File::open(segment_path(dir, first_seq)).unwrap());
    let (mut end, mut expected) = (0, first_seq);
    while let Some((header, _)) = read_frame(&mut reader, expected).unwrap() {
        end += (FRAME_HEADER + header.len) as u64;
        expected += 1;
    }
    end
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

#[test]
fn segments_are_written_ahead_in_zeros_that_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Vec<u8>> = (0..10).map(|n| vec![b'a' + n as u8; 100]).collect();
    append_all(dir.path(), 1 << 30, &values);
    let segment = segment_path(dir.path(), 0);
    let end = records_end(dir.path(), 0);
    assert_eq!(file_len(&segment), writer::PREWRITE_STEP);
    assert!(end > 0 && end < writer::PREWRITE_STEP);

    let (recovery, records) = read_all(dir.path());

    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(records.len(), 10);
    assert_eq!(file_len(&segment), writer::PREWRITE_STEP);
    // The next records go right after the last one, into the zeros.
    let seqs = append_all(dir.path(), 1 << 30, &[b"after".to_vec()]);
    assert_eq!(seqs, vec![10]);
    assert_eq!(file_len(&segment), writer::PREWRITE_STEP);
    let (_, records) = read_all(dir.path());
    assert_eq!(records.len(), 11);
    assert_eq!(records[10].value, b"after");
}

#[test]
fn records_are_read_across_rolled_segments_and_no_file_outgrows_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    // A 1 MiB spool rolls its segments at 256 KiB.
    let values: Vec<Vec<u8>> = (0..600u32)
        .map(|n| format!("{n:01000}").into_bytes())
        .collect();
    append_all(dir.path(), 1 << 20, &values);
    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.len() >= 3, "segments: {segments:?}");
    for &first in &segments {
        let len = file_len(&segment_path(dir.path(), first));
        assert!(len <= 256 * 1024 + 1100, "segment {first} is {len} bytes");
    }
    let (recovery, records) = read_all(dir.path());
    assert_eq!(recovery.truncated_bytes, 0);
    let read: Vec<Vec<u8>> = records.into_iter().map(|record| record.value).collect();
    assert_eq!(read, values);
}

/// Appends `values` all at once, so that the writer commits them in groups; returns each one's
/// sequence number and how many group commits it took.
fn append_concurrently(dir: &Path, max_bytes: u64, values: &[Vec<u8>]) -> (Vec<u64>, u64) {
    let metrics = Metrics::new();
    let (spool, parts, _) = Spool::open(dir, max_bytes, &metrics, None).unwrap();
    let seqs = runtime().block_on(futures_util::future::join_all(
        values
            .iter()
            .map(|value| spool.append(entry_frame(value), None)),
    ));
    spool.close();
    let _ = parts.writer.join();
    let seqs = seqs.into_iter().map(|seq| seq.unwrap()).collect();
    (seqs, metrics.spool_fsync_seconds.get_sample_count())
}

#[test]
fn group_commits_keep_every_record_at_its_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Vec<u8>> = (0..500)
        .map(|n| format!("{{\"n\":{n}}}").into_bytes())
        .collect();
    let (seqs, commits) = append_concurrently(dir.path(), 1 << 30, &values);
    assert!(commits < 100, "{commits} group commits for 500 records");
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..500).collect::<Vec<u64>>());
    let (_, records) = read_all(dir.path());
    assert_eq!(records.len(), 500);
    for (value, seq) in values.iter().zip(&seqs) {
        assert_eq!(&records[*seq as usize].value, value, "record {seq}");
    }
}

#[test]
fn a_segment_grows_step_by_step_and_keeps_growing_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Vec<u8>> = (0..1500u32)
        .map(|n| format!("{n:01000}").into_bytes())
        .collect();
    append_concurrently(dir.path(), 1 << 30, &values);
    let segment = segment_path(dir.path(), 0);
    assert_eq!(file_len(&segment), 2 * writer::PREWRITE_STEP);
    let (recovery, records) = read_all(dir.path());
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(records.len(), 1500);
    let more: Vec<Vec<u8>> = (1500..2200u32)
        .map(|n| format!("{n:01000}").into_bytes())
        .collect();
    let (seqs, _) = append_concurrently(dir.path(), 1 << 30, &more);
    assert_eq!(seqs.iter().min(), Some(&1500));
    assert_eq!(file_len(&segment), 3 * writer::PREWRITE_STEP);
    let read: Vec<Vec<u8>> = read_all(dir.path())
        .1
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(read, [values, more].concat());
}

#[test]
fn a_rolled_segment_that_ends_in_zeros_is_read_through() {
    let dir = tempfile::tempdir().unwrap();
    // 300 KB of records in a segment written ahead to 1 MiB...
    let values: Vec<Vec<u8>> = (0..300u32)
        .map(|n| format!("{n:01000}").into_bytes())
        .collect();
    append_concurrently(dir.path(), 1 << 30, &values);
    assert_eq!(
        file_len(&segment_path(dir.path(), 0)),
        writer::PREWRITE_STEP
    );
    // ...then a 1 MiB spool, whose segments roll at 256 KiB: the next record starts a new one.
    let seqs = append_all(dir.path(), 1 << 20, &[b"next".to_vec()]);
    assert_eq!(seqs, vec![300]);
    assert_eq!(list_segments(dir.path()).unwrap(), vec![0, 300]);
    let (recovery, records) = read_all(dir.path());
    assert_eq!(recovery.truncated_bytes, 0);
    let read: Vec<Vec<u8>> = records.into_iter().map(|r| r.value).collect();
    assert_eq!(read, [values, vec![b"next".to_vec()]].concat());
}

/// Records of varied sizes, so that the frames of one run do not line up with another's.
fn varied_records(numbers: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    numbers
        .map(|n| vec![b'a' + (n % 26) as u8; 500 + (n as usize * 37) % 900])
        .collect()
}

/// `values` appended to a 1 MiB spool (segments roll at 256 KiB), which is then opened again:
/// the spool, its parts and its segments' first sequence numbers.
fn reopened_with_rolled_segments(dir: &Path, values: &[Vec<u8>]) -> (Spool, SpoolParts, Vec<u64>) {
    append_all(dir, 1 << 20, values);
    let (spool, parts, _) = Spool::open(dir, 1 << 20, &Metrics::new(), None).unwrap();
    let segments = spool.shared.segments.lock().unwrap().clone();
    (spool, parts, segments)
}

#[test]
fn a_delivered_segment_beyond_the_spare_is_deleted_and_a_half_deleted_one_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let values = varied_records(0..900);
    let (spool, parts, segments) = reopened_with_rolled_segments(dir.path(), &values);
    assert!(segments.len() >= 4, "segments: {segments:?}");
    write_checkpoint(dir.path(), segments[2]).unwrap();
    spool.shared.segments.lock().unwrap().drain(..2);
    spool.shared.retire(segments[0]).unwrap();
    spool.shared.retire(segments[1]).unwrap();
    assert!(dir.path().join(SPARE).exists(), "the first is the spare");
    // The second is deleted by the deleter thread.
    let gone = |first: u64| {
        let path = segment_path(dir.path(), first);
        !path.exists() && !path.with_extension(RETIRED).exists()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gone(segments[1]) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(gone(segments[0]) && gone(segments[1]));
    spool.close();
    let _ = parts.writer.join();
    drop(parts.lock);

    // A run stopped while it was deleting a segment: what is left goes at the next open, and
    // the records after it are all there.
    let left = segment_path(dir.path(), segments[1]).with_extension(RETIRED);
    std::fs::write(&left, vec![7u8; 3 << 20]).unwrap();
    let (spool, parts, recovery) = Spool::open(dir.path(), 1 << 20, &Metrics::new(), None).unwrap();
    assert!(!left.exists());
    assert_eq!(recovery.records, values.len() as u64 - segments[2]);
    spool.close();
    let _ = parts.writer.join();
}

#[test]
fn a_delivered_segment_is_reused_as_the_next_one_and_its_old_records_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let first = varied_records(0..600);
    let (spool, parts, segments) = reopened_with_rolled_segments(dir.path(), &first);
    assert!(segments.len() >= 3, "segments: {segments:?}");
    let old_len = file_len(&segment_path(dir.path(), 0));
    // What the forwarder does once Kafka has every record of the first segment.
    write_checkpoint(dir.path(), segments[1]).unwrap();
    spool.shared.segments.lock().unwrap().remove(0);
    spool.shared.retire(0).unwrap();
    assert!(dir.path().join(SPARE).exists());
    assert!(!segment_path(dir.path(), 0).exists());

    // Enough records for the writer to roll: the new segment is the spare, overwritten in place.
    let more = varied_records(600..800);
    let runtime = runtime();
    for value in &more {
        runtime
            .block_on(spool.append(entry_frame(value), None))
            .unwrap();
    }
    spool.close();
    let _ = parts.writer.join();
    drop(parts.lock);
    let rolled = *list_segments(dir.path()).unwrap().last().unwrap();
    assert!(
        rolled > segments[2],
        "no roll: {:?}",
        list_segments(dir.path())
    );
    assert!(!dir.path().join(SPARE).exists());
    let reused = segment_path(dir.path(), rolled);
    assert_eq!(file_len(&reused), old_len);
    // Zeros follow the new records, not the segment's old ones.
    let end = records_end(dir.path(), rolled);
    let mut after = vec![0u8; 4096];
    File::open(&reused)
        .unwrap()
        .read_exact_at(&mut after, end)
        .unwrap();
    assert!(after.iter().all(|&byte| byte == 0));

    let (recovery, records) = read_all(dir.path());

    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(file_len(&reused), old_len);
    let read: Vec<Vec<u8>> = records.into_iter().map(|r| r.value).collect();
    let expected = [&first[segments[1] as usize..], &more[..]].concat();
    assert!(read == expected, "records differ");
    // And after the restart the writer goes on in the reused segment.
    let last = append_all(dir.path(), 1 << 20, &[b"last".to_vec()]);
    assert_eq!(last, vec![800]);
    let (recovery, records) = read_all(dir.path());
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(records.last().unwrap().value, b"last");
    assert_eq!(records.len(), expected.len() + 1);
}

/// In a reused segment larger than a step, the old records lie beyond the zeros written ahead;
/// the writer zeroes them before its records get there, across restarts.
#[test]
fn the_old_records_of_a_large_reused_segment_are_zeroed_before_new_records_reach_them() {
    let dir = tempfile::tempdir().unwrap();
    // A 16 MiB spool rolls its segments at 4 MiB.
    let max = 16 << 20;
    let record = |n: u32| vec![b'a' + (n % 26) as u8; 700 + (n as usize * 37) % 700];
    let first: Vec<Vec<u8>> = (0..4500).map(record).collect();
    // In groups small enough that the roll comes within 100 records of 4 MiB.
    for chunk in first.chunks(100) {
        append_concurrently(dir.path(), max, chunk);
    }
    let segments = list_segments(dir.path()).unwrap();
    assert_eq!(segments.len(), 2, "segments: {segments:?}");
    {
        let (spool, parts, _) = Spool::open(dir.path(), max, &Metrics::new(), None).unwrap();
        write_checkpoint(dir.path(), segments[1]).unwrap();
        spool.shared.segments.lock().unwrap().remove(0);
        spool.shared.retire(0).unwrap();
        // Fill the second segment and start the third in the spare.
        let runtime = runtime();
        let mut n = 4500;
        while list_segments(dir.path()).unwrap().len() < 2
            || spool.shared.segments.lock().unwrap().len() < 2
        {
            runtime
                .block_on(spool.append(entry_frame(&record(n)), None))
                .unwrap();
            n += 1;
        }
        spool.close();
        let _ = parts.writer.join();
    }
    let rolled = *list_segments(dir.path()).unwrap().last().unwrap();
    let reused = segment_path(dir.path(), rolled);
    let end = records_end(dir.path(), rolled);
    let step = writer::PREWRITE_STEP;
    assert!(
        file_len(&reused) > 2 * step,
        "a reused segment of {} bytes",
        file_len(&reused)
    );
    let mut bytes = vec![0u8; file_len(&reused) as usize];
    File::open(&reused)
        .unwrap()
        .read_exact_at(&mut bytes, 0)
        .unwrap();
    assert!(bytes[end as usize..step as usize]
        .iter()
        .all(|&byte| byte == 0));
    assert!(
        bytes[step as usize..].iter().any(|&byte| byte != 0),
        "no old records past the step"
    );

    // Restart, then write well past the first step of the reused segment.
    let (recovery, before) = read_all(dir.path());
    assert_eq!(recovery.truncated_bytes, 0);
    let later: Vec<Vec<u8>> = (10_000..12_000).map(record).collect();
    append_concurrently(dir.path(), max, &later);

    let (recovery, records) = read_all(dir.path());

    assert_eq!(recovery.truncated_bytes, 0);
    let read: Vec<Vec<u8>> = records.into_iter().map(|r| r.value).collect();
    let expected: Vec<Vec<u8>> = before.into_iter().map(|r| r.value).chain(later).collect();
    assert_eq!(read.len(), expected.len());
    assert!(read == expected, "records differ");
}

/// The forwarder puts a record back (the producer's queue is full) by seeking to where that record
/// starts, which works even when the segment before it was retired meanwhile.
#[test]
fn a_record_put_back_after_its_previous_segment_was_retired_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Vec<u8>> = (0..600u32)
        .map(|n| format!("{n:01000}").into_bytes())
        .collect();
    let (spool, parts, segments) = reopened_with_rolled_segments(dir.path(), &values);
    let mut reader = Reader::new(spool.shared.clone(), &segments, 0).unwrap();
    let mut frame = reader.next().unwrap().unwrap();
    while frame.seq < segments[1] {
        frame = reader.next().unwrap().unwrap();
    }
    assert_eq!(frame.location.segment, segments[1]);
    spool.shared.segments.lock().unwrap().remove(0);
    spool.shared.retire(segments[0]).unwrap();

    reader.seek(frame.location, frame.seq);

    let again = reader.next().unwrap().expect("the record again");
    assert_eq!(again.seq, segments[1]);
    assert_eq!(
        codec::decode(again.seq, &again.payload).unwrap().value,
        values[segments[1] as usize]
    );
    spool.close();
    let _ = parts.writer.join();
}

/// Old bytes past a step (a reused segment's records, or frames of a batch torn by a crash) are
/// zeroed by the write whose records reach the step, even when they end exactly on it: a reader
/// that reads ahead of the writer never finds an old frame where the next record goes.
#[test]
fn records_that_end_on_a_step_are_followed_by_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let step = writer::PREWRITE_STEP as usize;
    // entry_frame's frames are 55 bytes plus the value.
    let (first, second) = (vec![b'a'; step - 1000 - 55], vec![b'b'; 1000 - 55]);
    let (spool, parts, _) = Spool::open(dir.path(), 1 << 30, &Metrics::new(), None).unwrap();
    let runtime = runtime();
    runtime
        .block_on(spool.append(entry_frame(&first), None))
        .unwrap();
    // An old frame, with the sequence number the third record will get, just past the step.
    let mut ghost = entry_frame(b"never acknowledged");
    codec::seal(&mut ghost, 2);
    let file = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), 0))
        .unwrap();
    file.write_all_at(&ghost, step as u64).unwrap();
    runtime
        .block_on(spool.append(entry_frame(&second), None))
        .unwrap();
    assert_eq!(records_end(dir.path(), 0), step as u64);
    // The reader reads the second record, and reads ahead past it, before the third is written.
    let mut reader = Reader::new(spool.shared.clone(), &[0], 0).unwrap();
    reader.next().unwrap().expect("record 0");
    reader.next().unwrap().expect("record 1");
    runtime
        .block_on(spool.append(entry_frame(b"acknowledged"), None))
        .unwrap();

    let frame = match reader.next().unwrap() {
        Some(frame) => frame,
        None => reader.next().unwrap().expect("record 2"),
    };

    assert_eq!(
        codec::decode(frame.seq, &frame.payload).unwrap().value,
        b"acknowledged"
    );
    spool.close();
    let _ = parts.writer.join();
    drop(parts.lock);
    let (recovery, records) = read_all(dir.path());
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(records.len(), 3);
    assert_eq!(records[2].value, b"acknowledged");
}

/// Bit rot in the last segment, below the checkpoint, is not a torn tail: recovery resynchronises
/// at the next intact record instead of cutting the segment there, and new records continue after
/// the last intact one (no sequence number is reused, none is skipped).
#[test]
fn bit_rot_below_the_checkpoint_cuts_nothing_and_new_records_follow_the_last_intact_one() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Vec<u8>> = (0..10).map(|n| vec![b'a' + n as u8; 100]).collect();
    append_all(dir.path(), 1 << 30, &values);
    write_checkpoint(dir.path(), 8).unwrap();
    // Bit rot in record 3 (delivered already): frames are 155 bytes here.
    let segment = segment_path(dir.path(), 0);
    let mut bytes = fs::read(&segment).unwrap();
    bytes[3 * 155 + 40] ^= 0xff;
    fs::write(&segment, bytes).unwrap();

    let seqs = append_all(dir.path(), 1 << 30, &[b"new".to_vec()]);

    assert_eq!(seqs, vec![10]);
    assert_eq!(list_segments(dir.path()).unwrap(), vec![0]);
    let (recovery, records) = read_all(dir.path());
    assert_eq!(recovery.checkpoint, 8);
    assert_eq!(recovery.truncated_bytes, 0);
    let read: Vec<(u64, Vec<u8>)> = records.into_iter().map(|r| (r.seq, r.value)).collect();
    assert_eq!(
        read,
        vec![
            (8, values[8].clone()),
            (9, values[9].clone()),
            (10, b"new".to_vec())
        ]
    );
}

/// Bit rot in the middle of the last segment, above the checkpoint: the records after it are
/// kept (not cut as a torn tail), counted live, and the damaged one is reported as a gap.
#[test]
fn recovery_keeps_the_intact_records_after_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Vec<u8>> = (0..10).map(|n| vec![b'a' + n as u8; 100]).collect();
    append_all(dir.path(), 1 << 30, &values);
    let segment = segment_path(dir.path(), 0);
    let mut bytes = fs::read(&segment).unwrap();
    // The header (length field) of record 5: the frame cannot even be measured.
    bytes[5 * 155 + 1] ^= 0xff;
    fs::write(&segment, bytes).unwrap();

    let status = Status::read(dir.path()).unwrap();
    assert_eq!((status.records, status.corrupt_records), (9, 1));
    let (recovery, records) = read_all(dir.path());
    assert_eq!(recovery.records, 9);
    assert_eq!(recovery.truncated_bytes, 0);
    let seqs: Vec<u64> = records.iter().map(|record| record.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 6, 7, 8, 9]);
    assert!(dir.path().join(format!("{:020}.seg.corrupt", 0)).exists());
}

/// A batch whose write or fsync failed is cut back and answered 503; the next batch reuses its
/// sequence numbers. A reader that had read the refused bytes ahead must not deliver them.
#[test]
fn a_reader_forgets_what_it_read_ahead_of_a_cut_back() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, parts, _) = Spool::open(dir.path(), 1 << 30, &Metrics::new(), None).unwrap();
    let runtime = runtime();
    for n in 0..3 {
        runtime
            .block_on(spool.append(entry_frame(format!("{n}").as_bytes()), None))
            .unwrap();
    }
    // The refused batch's frame, in the file as the failed write left it...
    let end = records_end(dir.path(), 0);
    let mut refused = entry_frame(b"refused");
    codec::seal(&mut refused, 3);
    let file = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), 0))
        .unwrap();
    file.write_all_at(&refused, end).unwrap();
    // ...when the reader reads ahead of it.
    let mut reader = Reader::new(spool.shared.clone(), &[0], 0).unwrap();
    for _ in 0..3 {
        reader.next().unwrap().expect("a durable record");
    }
    // The writer's cut back.
    file.write_all_at(&vec![0; refused.len()], end).unwrap();
    spool.shared.cut_backs.fetch_add(1, Ordering::Release);
    // The next batch is acknowledged with the same sequence number.
    let seq = runtime
        .block_on(spool.append(entry_frame(b"accepted"), None))
        .unwrap();
    assert_eq!(seq, 3);

    let frame = reader.next().unwrap().expect("record 3");

    assert_eq!(
        codec::decode(frame.seq, &frame.payload).unwrap().value,
        b"accepted"
    );
    spool.close();
    let _ = parts.writer.join();
}

#[test]
fn a_torn_tail_is_truncated_and_intact_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Vec<u8>> = (0..10).map(|n| vec![b'a' + n as u8; 100]).collect();
    append_all(dir.path(), 1 << 20, &values);
    let segment = segment_path(dir.path(), 0);
    let end = records_end(dir.path(), 0);
    let written_ahead = file_len(&segment);
    // Half of a frame where the next record goes: a crash in the middle of a write.
    let mut torn = entry_frame(b"never acknowledged");
    codec::seal(&mut torn, 10);
    let file = OpenOptions::new().write(true).open(&segment).unwrap();
    file.write_all_at(&torn[..torn.len() / 2], end).unwrap();
    drop(file);

    let (recovery, records) = read_all(dir.path());

    assert!(written_ahead > end);
    assert_eq!(recovery.truncated_bytes, written_ahead - end);
    assert_eq!(records.len(), 10);
    // The spool appends after the cut: the next record gets sequence number 10.
    let seqs = append_all(dir.path(), 1 << 20, &[b"after".to_vec()]);
    assert_eq!(seqs, vec![10]);
    assert_eq!(read_all(dir.path()).1.len(), 11);
}

#[test]
fn a_full_spool_refuses_with_a_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, parts, _) = Spool::open(dir.path(), 64 * 1024, &Metrics::new(), None).unwrap();
    let error = runtime().block_on(async {
        loop {
            if let Err(error) = spool.append(entry_frame(&[b'x'; 1000]), None).await {
                return error;
            }
        }
    });
    match error {
        SpoolError::Full { retry_after } => assert!((1..=300).contains(&retry_after)),
        other => panic!("expected Full, got {other:?}"),
    }
    spool.close();
    let _ = parts.writer.join();
}

#[test]
fn the_checkpoint_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Vec<u8>> = (0..5).map(|n| vec![n; 10]).collect();
    append_all(dir.path(), 1 << 20, &values);
    write_checkpoint(dir.path(), 3).unwrap();
    let (recovery, records) = read_all(dir.path());
    assert_eq!(recovery.checkpoint, 3);
    assert_eq!(recovery.records, 2);
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![3, 4]
    );
    let status = Status::read(dir.path()).unwrap();
    assert_eq!(status.records, 2);
    assert_eq!(status.checkpoint, 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For any sequence of acknowledged appends across several runs, each ended by a crash that
    /// leaves an arbitrary torn tail, every acknowledged record is recovered, in order.
    #[test]
    fn every_acknowledged_record_is_recovered_after_crashes(
        runs in proptest::collection::vec(
            (proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
             proptest::collection::vec(any::<u8>(), 0..200),
             0..=2u8),
            1..4)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut acknowledged: Vec<Vec<u8>> = Vec::new();
        for (values, garbage, place) in runs {
            append_all(dir.path(), 64 * 1024 * 1024, &values);
            acknowledged.extend(values);
            // The crash: whatever was being written when the process died, where the next
            // records go (into the zeros), further into the zeros, or past the file's end.
            let last = *list_segments(dir.path()).unwrap().last().unwrap();
            let path = segment_path(dir.path(), last);
            let end = records_end(dir.path(), last);
            let offset = match place {
                0 => end,
                1 => end + 512,
                _ => file_len(&path),
            };
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.write_all_at(&garbage, offset).unwrap();
        }
        let (_, records) = read_all(dir.path());
        let recovered: Vec<Vec<u8>> = records.into_iter().map(|record| record.value).collect();
        prop_assert_eq!(recovered, acknowledged);
    }
}
