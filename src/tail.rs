//! Reading a topic back: `hookrelay tail`, and the tests' view of what arrived in Kafka.
//!
//! The reader assigns itself every partition of one topic (no consumer group, no commits), so it
//! never disturbs the consumers of the topic and works on any Kafka-protocol broker.

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartAt {
    Beginning,
    End,
}

/// One record as stored in Kafka.
#[derive(Debug, Clone)]
pub struct TailRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl TailRecord {
    /// The first header of this name, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }
}

pub struct Tail {
    consumer: BaseConsumer,
    topic: String,
}

/// Why a topic cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("cannot create a Kafka consumer: {0}")]
    Consumer(#[source] KafkaError),
    #[error("cannot read metadata of {0}: {1}")]
    Metadata(String, #[source] KafkaError),
    #[error("topic {0} does not exist")]
    NoTopic(String),
    #[error("cannot assign {0}: {1}")]
    Assign(String, #[source] KafkaError),
    #[error("cannot read {0}: {1}")]
    Read(String, #[source] KafkaError),
}

impl Tail {
    /// Opens `topic` on `brokers`; `options` are extra librdkafka properties (security settings).
    pub fn open<'a>(
        brokers: &str,
        options: impl IntoIterator<Item = (&'a String, &'a String)>,
        topic: &str,
        start: StartAt,
        timeout: Duration,
    ) -> Result<Tail, TailError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set(
                "group.id",
                format!("hookrelay-tail-{}", uuid::Uuid::now_v7().simple()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        for (key, value) in options {
            // Producer-only properties would make the consumer refuse its configuration.
            if !is_producer_only(key) {
                config.set(key, value);
            }
        }
        let consumer: BaseConsumer = config.create().map_err(TailError::Consumer)?;
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|error| TailError::Metadata(topic.to_owned(), error))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|found| found.name() == topic && found.error().is_none())
            .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
            .collect();
        if partitions.is_empty() {
            return Err(TailError::NoTopic(topic.to_owned()));
        }
        let offset = match start {
            StartAt::Beginning => Offset::Beginning,
            StartAt::End => Offset::End,
        };
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            assignment
                .add_partition_offset(topic, partition, offset)
                .map_err(|error| TailError::Assign(format!("{topic}/{partition}"), error))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|error| TailError::Assign(topic.to_owned(), error))?;
        Ok(Tail {
            consumer,
            topic: topic.to_owned(),
        })
    }

    /// The next record, waiting at most `timeout`.
    pub fn next(&self, timeout: Duration) -> Result<Option<TailRecord>, TailError> {
        match self.consumer.poll(timeout) {
            None => Ok(None),
            // A broker that restarts, stalls or moves a leader: librdkafka reconnects and goes
            // on reading by itself (seen with Apache Kafka after SIGSTOP/SIGCONT).
            Some(Err(error)) if is_transient(&error) => Ok(None),
            Some(Err(error)) => Err(TailError::Read(self.topic.clone(), error)),
            Some(Ok(message)) => Ok(Some(TailRecord {
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().unwrap_or_default().to_vec(),
                headers: crate::publisher::owned_headers(&message),
            })),
        }
    }

    /// Reads until `count` records have arrived or nothing arrived for `idle`.
    pub fn collect(&self, count: usize, idle: Duration) -> Result<Vec<TailRecord>, TailError> {
        let mut records = Vec::new();
        let mut last = Instant::now();
        while records.len() < count && last.elapsed() < idle {
            if let Some(record) = self.next(Duration::from_millis(100))? {
                records.push(record);
                last = Instant::now();
            }
        }
        Ok(records)
    }
}

/// Errors a consumer reports while the connection to a broker is lost or its leader moves, and
/// recovers from by itself.
fn is_transient(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::BrokerTransportFailure
                | Code::AllBrokersDown
                | Code::OperationTimedOut
                | Code::RequestTimedOut
                | Code::NotLeaderForPartition
                | Code::LeaderNotAvailable
                | Code::NetworkException
                | Code::NotCoordinator
                | Code::CoordinatorNotAvailable
        )
    )
}

/// How many records `topic` holds, counted by reading it from the beginning until nothing new
/// arrives for `idle` (partition offsets alone are not exact on every Kafka-protocol broker).
pub fn count<'a>(
    brokers: &str,
    options: impl IntoIterator<Item = (&'a String, &'a String)>,
    topic: &str,
    timeout: Duration,
    idle: Duration,
) -> Result<u64, TailError> {
    let tail = Tail::open(brokers, options, topic, StartAt::Beginning, timeout)?;
    let mut total = 0u64;
    let mut last = Instant::now();
    while last.elapsed() < idle {
        if let Some(message) = tail.consumer.poll(Duration::from_millis(100)) {
            message.map_err(|error| TailError::Read(topic.to_owned(), error))?;
            total += 1;
            last = Instant::now();
        }
    }
    Ok(total)
}

fn is_producer_only(key: &str) -> bool {
    matches!(
        key,
        "acks"
            | "compression.type"
            | "linger.ms"
            | "enable.idempotence"
            | "message.timeout.ms"
            | "queue.buffering.max.kbytes"
            | "queue.buffering.max.messages"
            | "batch.size"
            | "batch.num.messages"
            | "retries"
            | "retry.backoff.ms"
    )
}

/// Writes a record for a person to read: position, key, headers, then the value as sent.
pub fn print(out: &mut impl Write, topic: &str, record: &TailRecord) -> std::io::Result<()> {
    writeln!(
        out,
        "--- {topic} partition {} offset {}",
        record.partition, record.offset
    )?;
    if let Some(key) = &record.key {
        writeln!(out, "key: {}", String::from_utf8_lossy(key))?;
    }
    for (name, value) in &record.headers {
        writeln!(out, "{name}: {}", String::from_utf8_lossy(value))?;
    }
    out.write_all(&record.value)?;
    writeln!(out)?;
    out.flush()
}
