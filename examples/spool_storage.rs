//! Chooses the spool's storage by measurement: hookrelay's purpose-built segmented log against
//! SQLite in WAL mode (`synchronous = FULL`, one transaction per group commit), both durable
//! before they answer, both with group commit, on the same disk and the same records.
//!
//! Run: `cargo run --release --example spool_storage -- [DIR] [RECORDS]`. Prints a Markdown table:
//! appended records per second and the latency of one durable append, at 1, 16 and 64 concurrent
//! appenders (concurrent webhook requests).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use hookrelay::metrics::Metrics;
use hookrelay::spool::{codec, Entry, Spool};
use tokio::sync::oneshot;

const BODY: &[u8] = br#"{"name":"Student Name","email":"student@example.com","phone":1234567890,"course":"Example course","courseId":"634fc35ddaf58580e2418c40","lastProgressOn":"2023-11-20T18:30Z"}"#;

fn frame() -> Vec<u8> {
    codec::encode(&Entry {
        received: SystemTime::now(),
        source: "tagmango",
        topic: "webhooks.tagmango.course.completed.50",
        key: b"student@example.com",
        headers: &[
            ("ce_specversion", b"1.0"),
            ("ce_id", b"e8e6319a-deb5-5f56-89e2-e65c1175acfc"),
            ("ce_source", b"/sources/tagmango"),
            ("ce_type", b"course.completed.50"),
            ("ce_time", b"2026-11-27T06:44:04.394Z"),
            ("content-type", b"application/json"),
            ("hookrelay_auth", b"token"),
        ],
        value: BODY,
    })
}

/// A durable append, as the request path uses it.
trait Store: Send + Sync + 'static {
    fn append(&self, record: Vec<u8>) -> impl std::future::Future<Output = ()> + Send;
}

struct LogStore(Spool);

impl Store for LogStore {
    async fn append(&self, record: Vec<u8>) {
        self.0.append(record, None).await.unwrap();
    }
}

/// SQLite with the same group commit: a writer thread takes every waiting record and commits
/// them in one transaction (one WAL fsync with `synchronous = FULL`).
struct SqliteStore {
    sender: mpsc::Sender<(Vec<u8>, oneshot::Sender<()>)>,
}

impl SqliteStore {
    fn open(path: &Path) -> SqliteStore {
        let connection = rusqlite::Connection::open(path).unwrap();
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                 CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY, record BLOB NOT NULL);",
            )
            .unwrap();
        let (sender, receiver) = mpsc::channel::<(Vec<u8>, oneshot::Sender<()>)>();
        std::thread::spawn(move || {
            let mut connection = connection;
            while let Ok(first) = receiver.recv() {
                let mut batch = vec![first];
                while let Ok(next) = receiver.try_recv() {
                    batch.push(next);
                }
                let transaction = connection.transaction().unwrap();
                {
                    let mut insert = transaction
                        .prepare_cached("INSERT INTO spool (record) VALUES (?1)")
                        .unwrap();
                    for (record, _) in &batch {
                        insert.execute([record]).unwrap();
                    }
                }
                transaction.commit().unwrap();
                for (_, reply) in batch {
                    let _ = reply.send(());
                }
            }
        });
        SqliteStore { sender }
    }
}

impl Store for SqliteStore {
    async fn append(&self, record: Vec<u8>) {
        let (reply, done) = oneshot::channel();
        self.sender.send((record, reply)).unwrap();
        done.await.unwrap();
    }
}

struct Result {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

async fn measure<S: Store>(store: std::sync::Arc<S>, records: usize, concurrency: usize) -> Result {
    let started = Instant::now();
    let per_task = records / concurrency;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let record = frame();
                let begun = Instant::now();
                store.append(record).await;
                latencies.push(begun.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Result {
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let base = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/spool-storage".to_owned()),
    );
    let records: usize = args.next().map_or(20_000, |n| n.parse().unwrap());
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();

    println!("| storage | concurrent appenders | records/s | p50 append | p99 append |");
    println!("|---|---:|---:|---:|---:|");
    for concurrency in [1usize, 16, 64] {
        let count = if concurrency == 1 {
            records / 10
        } else {
            records
        };
        let dir = base.join(format!("log-{concurrency}"));
        let (spool, _parts, _) = Spool::open(&dir, 1 << 34, &Metrics::new(), None).unwrap();
        let log = measure(
            std::sync::Arc::new(LogStore(spool.clone())),
            count,
            concurrency,
        )
        .await;
        spool.close();
        let sqlite = SqliteStore::open(&base.join(format!("sqlite-{concurrency}.db")));
        let sql = measure(std::sync::Arc::new(sqlite), count, concurrency).await;
        for (name, result) in [
            ("segmented log (hookrelay)", log),
            ("SQLite WAL, synchronous=FULL", sql),
        ] {
            println!(
                "| {name} | {concurrency} | {:.0} | {:.2} ms | {:.2} ms |",
                result.per_sec,
                result.p50.as_secs_f64() * 1e3,
                result.p99.as_secs_f64() * 1e3
            );
        }
    }
}
