//! Fills a spool directory with TagMango records, as the relay spools them, for the benchmark's
//! recovery phase; then times reopening it: the segment scan with every record's CRC and the
//! checkpoint, which `hookrelay serve` does before it listens. Warm: the spool just written, in
//! the page cache. Cold: after dropping the page cache (needs root; reported as `null` otherwise),
//! as after a machine restart.
//!
//! Run: `cargo run --release --example spool_fill -- DIR TOPIC MIB`. Prints one JSON line.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use hookrelay::metrics::Metrics;
use hookrelay::spool::{codec, Entry, Spool};

/// The spool limit the benchmark's relay runs with (larger than anything filled here).
const MAX_BYTES: u64 = 4 << 30;
const APPENDERS: usize = 64;

fn frame(body: &[u8], topic: &str, n: u64) -> Vec<u8> {
    let id = format!("00000000-0000-5000-8000-{n:012}");
    codec::encode(&Entry {
        received: SystemTime::now(),
        source: "tagmango",
        topic,
        key: b"student@example.com",
        headers: &[
            ("ce_specversion", b"1.0"),
            ("ce_id", id.as_bytes()),
            ("ce_source", b"/sources/tagmango"),
            ("ce_type", b"course.completed.50"),
            ("ce_time", b"2026-12-01T06:44:04.394Z"),
            ("content-type", b"application/json"),
            ("hookrelay_auth", b"token"),
        ],
        value: body,
    })
}

/// Seconds to open (recover) the spool in `dir`, and the records it found.
fn reopen(dir: &std::path::Path) -> (f64, u64) {
    let started = Instant::now();
    let (spool, parts, recovery) = Spool::open(dir, MAX_BYTES, &Metrics::new(), None).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    spool.close();
    drop(parts);
    (seconds, recovery.records)
}

/// Drops the page cache; false when not allowed.
fn drop_page_cache() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: spool_fill DIR TOPIC MIB";
    let dir = PathBuf::from(args.next().expect(usage));
    let topic: &'static str = Box::leak(args.next().expect(usage).into_boxed_str());
    let mib: u64 = args.next().expect(usage).parse().expect(usage);
    let body = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/tagmango/course.completed.50.json"),
    )
    .unwrap();
    let body: &'static [u8] = Box::leak(body.into_boxed_slice());
    let frame_bytes = frame(body, topic, 0).len() as u64;
    let records = (mib << 20) / frame_bytes;

    let (spool, parts, _) = Spool::open(&dir, MAX_BYTES, &Metrics::new(), None).unwrap();
    let spool = Arc::new(spool);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for appender in 0..APPENDERS as u64 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = appender;
            while n < records {
                spool.append(frame(body, topic, n), None).await.unwrap();
                n += APPENDERS as u64;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let fill_seconds = started.elapsed().as_secs_f64();
    let bytes = spool.shared().live_bytes();
    spool.close();
    drop(parts);

    let (warm, found) = reopen(&dir);
    assert_eq!(found, records, "every appended record is recovered");
    let cold = drop_page_cache().then(|| reopen(&dir).0);
    let gib = bytes as f64 / f64::from(1u32 << 30);
    println!(
        "{}",
        serde_json::json!({
            "records": records,
            "bytes": bytes,
            "fill_seconds": fill_seconds,
            "warm_seconds": warm,
            "cold_seconds": cold,
            "warm_seconds_per_gib": warm / gib,
            "cold_seconds_per_gib": cold.map(|cold| cold / gib),
        })
    );
}
