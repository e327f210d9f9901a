//! Measures what one record costs the relay's process (CPU time per record) with the three ways
//! of producing that hookrelay could use, against a real broker:
//!
//! 1. `FutureProducer`, one delivery future awaited per record (the obvious request-path design);
//! 2. hookrelay's `ThreadedProducer` with a delivery callback and a oneshot per record (`broker`
//!    ack mode);
//! 3. the same producer, fire-and-forget (`memory` ack mode).
//!
//! Run: `cargo run --release --example producer_cost -- BROKERS TOPIC [RECORDS]` (the topic must
//! exist). `scripts/bench` runs it against its Apache Kafka broker.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer, ProducerContext,
    ThreadedProducer,
};
use tokio::sync::oneshot;

const BODY: &[u8] = br#"{"name":"Student Name","email":"student@example.com","phone":1234567890,"course":"Example course","courseId":"634fc35ddaf58580e2418c40","lastProgressOn":"2023-11-20T18:30Z"}"#;

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

fn config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5");
    config
}

struct Callback {
    delivered: Arc<AtomicU64>,
}

impl ClientContext for Callback {}

impl ProducerContext for Callback {
    type DeliveryOpaque = Box<Option<oneshot::Sender<bool>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, reply: Self::DeliveryOpaque) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(reply) = *reply {
            let _ = reply.send(result.is_ok());
        }
    }
}

struct Measurement {
    name: &'static str,
    records: usize,
    wall: Duration,
    cpu: Duration,
}

async fn future_producer(brokers: &str, topic: &str, records: usize) -> Measurement {
    let producer: FutureProducer = config(brokers).create().expect("producer");
    let (cpu, wall) = (cpu_time(), Instant::now());
    let mut waiting = Vec::with_capacity(records);
    for n in 0..records {
        let key = n.to_string();
        let record = FutureRecord::to(topic).key(&key).payload(BODY);
        let delivery = producer
            .send_result(record)
            .map_err(|(error, _)| error)
            .expect("enqueued");
        waiting.push(tokio::spawn(delivery));
    }
    for delivery in waiting {
        delivery
            .await
            .expect("task")
            .expect("delivered")
            .expect("acknowledged");
    }
    Measurement {
        name: "FutureProducer, a future awaited per record",
        records,
        wall: wall.elapsed(),
        cpu: cpu_time() - cpu,
    }
}

async fn callback_producer(brokers: &str, topic: &str, records: usize, wait: bool) -> Measurement {
    let delivered = Arc::new(AtomicU64::new(0));
    let producer: ThreadedProducer<Callback> = config(brokers)
        .create_with_context(Callback {
            delivered: delivered.clone(),
        })
        .expect("producer");
    let (cpu, wall) = (cpu_time(), Instant::now());
    let mut waiting = Vec::with_capacity(if wait { records } else { 0 });
    for n in 0..records {
        let key = n.to_string();
        let (reply, acknowledged) = if wait {
            let (reply, acknowledged) = oneshot::channel();
            (Some(reply), Some(acknowledged))
        } else {
            (None, None)
        };
        let record = BaseRecord::with_opaque_to(topic, Box::new(reply))
            .key(&key)
            .payload(BODY);
        producer
            .send(record)
            .map_err(|(error, _)| error)
            .expect("enqueued");
        if let Some(acknowledged) = acknowledged {
            waiting.push(tokio::spawn(acknowledged));
        }
    }
    for acknowledged in waiting {
        assert!(acknowledged.await.expect("task").expect("reported"));
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
    assert_eq!(delivered.load(Ordering::Relaxed), records as u64);
    Measurement {
        name: if wait {
            "ThreadedProducer + callback, oneshot per record (broker mode)"
        } else {
            "ThreadedProducer + callback, fire and forget (memory mode)"
        },
        records,
        wall: wall.elapsed(),
        cpu: cpu_time() - cpu,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let brokers = args
        .next()
        .expect("usage: producer_cost BROKERS TOPIC [RECORDS]");
    let topic = args
        .next()
        .expect("usage: producer_cost BROKERS TOPIC [RECORDS]");
    let records: usize = args
        .next()
        .map_or(50_000, |n| n.parse().expect("RECORDS is a number"));

    // Warm up connections and metadata once, so every variant starts equal.
    callback_producer(&brokers, &topic, 1_000, false).await;
    let results = [
        future_producer(&brokers, &topic, records).await,
        callback_producer(&brokers, &topic, records, true).await,
        callback_producer(&brokers, &topic, records, false).await,
    ];
    println!("| producer | records | wall s | CPU µs/record |");
    println!("|---|---:|---:|---:|");
    for result in &results {
        println!(
            "| {} | {} | {:.2} | {:.1} |",
            result.name,
            result.records,
            result.wall.as_secs_f64(),
            result.cpu.as_secs_f64() * 1e6 / result.records as f64
        );
    }
}
