//! Every metric hookrelay exports: names, help texts and labels live here and nowhere else.
//!
//! The registry belongs to the application (not the `prometheus` crate's global default), so
//! several relays can run in one test process. Per-source series are resolved once at start
//! ([`SourceMetrics`]) so the request path does not hash label values.

use std::sync::Arc;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub const HTTP_REQUESTS_TOTAL: &str = "hookrelay_http_requests_total";
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "hookrelay_http_request_duration_seconds";
pub const REJECTIONS_TOTAL: &str = "hookrelay_rejections_total";
pub const EVENTS_ACCEPTED_TOTAL: &str = "hookrelay_events_accepted_total";
pub const KAFKA_RECORDS_DELIVERED_TOTAL: &str = "hookrelay_kafka_records_delivered_total";
pub const KAFKA_RECORDS_FAILED_TOTAL: &str = "hookrelay_kafka_records_failed_total";
pub const KAFKA_DELIVERY_DURATION_SECONDS: &str = "hookrelay_kafka_delivery_duration_seconds";
pub const DUPLICATES_TOTAL: &str = "hookrelay_duplicates_total";
pub const SCHEMA_VIOLATIONS_TOTAL: &str = "hookrelay_schema_violations_total";
pub const SPOOL_RECORDS: &str = "hookrelay_spool_records";
pub const SPOOL_BYTES: &str = "hookrelay_spool_bytes";
pub const SPOOL_OLDEST_AGE_SECONDS: &str = "hookrelay_spool_oldest_record_age_seconds";
pub const SPOOL_FSYNC_SECONDS: &str = "hookrelay_spool_fsync_duration_seconds";
pub const FORWARDER_RETRIES_TOTAL: &str = "hookrelay_forwarder_retries_total";
pub const SPOOL_RECORDS_LOST_TOTAL: &str = "hookrelay_spool_records_lost_total";
pub const DEAD_LETTERS_TOTAL: &str = "hookrelay_dead_letters_total";
pub const HANDSHAKES_TOTAL: &str = "hookrelay_handshakes_total";
pub const HTTP_REQUEST_BODY_BYTES: &str = "hookrelay_http_request_body_bytes";
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "hookrelay_http_requests_in_flight";
pub const KAFKA_QUEUE_MESSAGES: &str = "hookrelay_kafka_producer_queue_messages";
pub const KAFKA_QUEUE_BYTES: &str = "hookrelay_kafka_producer_queue_bytes";
pub const KAFKA_BROKER_RTT_SECONDS: &str = "hookrelay_kafka_broker_rtt_seconds";
pub const KAFKA_BROKER_UP: &str = "hookrelay_kafka_broker_up";
pub const CONFIG_RELOAD_SUCCESS: &str = "hookrelay_config_reload_success";
pub const TLS_CERTIFICATE_EXPIRY: &str = "hookrelay_tls_certificate_expiry_timestamp_seconds";
pub const READY: &str = "hookrelay_ready";
pub const BUILD_INFO: &str = "hookrelay_build_info";

/// The `reason` labels of `hookrelay_dead_letters_total`: Kafka's permanent refusals
/// ([`crate::publisher::Refusal`]) and the relay's own refusals of authentic events.
pub const DEAD_LETTER_REASONS: &[&str] = &[
    "record_too_large",
    "not_authorized",
    "unknown_topic",
    "invalid_record",
    "schema_violation",
    "invalid_json",
    "empty_body",
];

/// The `source` label of requests that name no configured source.
pub const UNKNOWN_SOURCE: &str = "_unknown";

/// Body size buckets from 64 bytes to 4 MiB.
const BODY_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
];

/// Latency buckets from 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The application's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    rejections: IntCounterVec,
    accepted: IntCounterVec,
    delivered: IntCounterVec,
    failed: IntCounterVec,
    delivery_duration: HistogramVec,
    duplicates: IntCounterVec,
    body_bytes: HistogramVec,
    pub in_flight: IntGauge,
    pub kafka: KafkaMetrics,
    schema_violations: IntCounterVec,
    handshakes: IntCounterVec,
    pub reload_success: IntGauge,
    /// When the ingress certificate expires (Unix seconds); 0 without `server.tls`.
    pub tls_certificate_expiry: IntGauge,
    pub ready: IntGauge,
    pub spool_records: IntGauge,
    pub spool_bytes: IntGauge,
    pub spool_oldest_age_seconds: Gauge,
    pub spool_fsync_seconds: Histogram,
    pub forwarder_retries: IntCounter,
    pub spool_records_lost: IntCounter,
    /// Events Kafka refused for good, or refused by the relay after the sender proved who it is,
    /// that went to the dead-letter topic or directory, by source and reason.
    pub dead_letters: IntCounterVec,
}

/// The series of one source, resolved once.
pub struct SourceMetrics {
    pub accepted: IntCounter,
    pub delivered: IntCounter,
    pub failed: IntCounter,
    pub delivery_duration: Histogram,
    pub request_duration: Histogram,
    pub duplicates: IntCounter,
    pub schema_violations: IntCounter,
    pub body_bytes: Histogram,
    pub handshakes: IntCounter,
}

/// What librdkafka's statistics (`statistics.interval.ms`) report about the producer.
#[derive(Clone)]
pub struct KafkaMetrics {
    pub queue_messages: IntGauge,
    pub queue_bytes: IntGauge,
    pub broker_rtt_seconds: prometheus::GaugeVec,
    pub broker_up: IntGaugeVec,
}

/// Defines metrics in one registry: each definition is static (a name, a help text, labels), so
/// a failure here is a programming error found by any test, never a run-time condition.
struct Define<'r>(&'r Registry);

impl Define<'_> {
    fn add<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: prometheus::Result<M>,
    ) -> M {
        let metric = metric.expect("metric definitions are static and valid");
        self.0
            .register(Box::new(metric.clone()))
            .expect("metric names are unique");
        metric
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help))
    }

    fn histograms(&self, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, labels))
    }
}

impl KafkaMetrics {
    fn new(define: &Define<'_>) -> KafkaMetrics {
        KafkaMetrics {
            queue_messages: define.gauge(
                KAFKA_QUEUE_MESSAGES,
                "Records in the producer's queue (librdkafka statistics).",
            ),
            queue_bytes: define.gauge(
                KAFKA_QUEUE_BYTES,
                "Bytes in the producer's queue (librdkafka statistics).",
            ),
            broker_rtt_seconds: define.add(prometheus::GaugeVec::new(
                Opts::new(
                    KAFKA_BROKER_RTT_SECONDS,
                    "Mean request round trip to each broker over the last statistics interval.",
                ),
                &["broker"],
            )),
            broker_up: define.add(IntGaugeVec::new(
                Opts::new(
                    KAFKA_BROKER_UP,
                    "1 while the producer's connection to the broker is up, else 0.",
                ),
                &["broker"],
            )),
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let define = Define(&registry);
        let by_source = &["source"];
        let metrics = Metrics {
            http_requests: define.counters(
                HTTP_REQUESTS_TOTAL,
                "Webhook requests answered, by source and HTTP status.",
                &["source", "status"],
            ),
            http_duration: define.histograms(
                HTTP_REQUEST_DURATION_SECONDS,
                "Time from the request head to the response, by source.",
                by_source,
                LATENCY_BUCKETS,
            ),
            rejections: define.counters(
                REJECTIONS_TOTAL,
                "Requests refused, by source and problem code.",
                &["source", "reason"],
            ),
            accepted: define.counters(
                EVENTS_ACCEPTED_TOTAL,
                "Events answered 2xx (they reached their durability point), by source.",
                by_source,
            ),
            delivered: define.counters(
                KAFKA_RECORDS_DELIVERED_TOTAL,
                "Records acknowledged by Kafka, by source.",
                by_source,
            ),
            failed: define.counters(
                KAFKA_RECORDS_FAILED_TOTAL,
                "Records Kafka did not acknowledge (delivery error or message timeout), by source.",
                by_source,
            ),
            delivery_duration: define.histograms(
                KAFKA_DELIVERY_DURATION_SECONDS,
                "Time from accepting an event to Kafka's acknowledgement, by source.",
                by_source,
                LATENCY_BUCKETS,
            ),
            duplicates: define.counters(
                DUPLICATES_TOTAL,
                "Events answered \"duplicate\" (seen within the idempotency window), by source.",
                by_source,
            ),
            schema_violations: define.counters(
                SCHEMA_VIOLATIONS_TOTAL,
                "Bodies that failed their JSON Schema (refused in enforce mode, accepted in observe mode), by source.",
                by_source,
            ),
            body_bytes: define.histograms(
                HTTP_REQUEST_BODY_BYTES,
                "Size of webhook request bodies read, by source.",
                by_source,
                BODY_BUCKETS,
            ),
            in_flight: define.gauge(
                HTTP_REQUESTS_IN_FLIGHT,
                "Webhook requests being handled now.",
            ),
            kafka: KafkaMetrics::new(&define),
            reload_success: define.gauge(
                CONFIG_RELOAD_SUCCESS,
                "1 when the last configuration reload succeeded (or none was tried), 0 when it was refused.",
            ),
            tls_certificate_expiry: define.gauge(
                TLS_CERTIFICATE_EXPIRY,
                "When the ingress TLS certificate expires (Unix time, seconds); 0 when the ingress serves plain HTTP.",
            ),
            ready: define.gauge(READY, "1 while the relay accepts webhooks, else 0."),
            spool_records: define.gauge(
                SPOOL_RECORDS,
                "Records in the spool not yet acknowledged by Kafka.",
            ),
            spool_bytes: define.gauge(
                SPOOL_BYTES,
                "Bytes of the records in the spool not yet acknowledged by Kafka.",
            ),
            spool_oldest_age_seconds: define.add(Gauge::new(
                SPOOL_OLDEST_AGE_SECONDS,
                "Age of the oldest record in the spool not yet acknowledged by Kafka (0 when empty).",
            )),
            spool_fsync_seconds: define.add(Histogram::with_opts(
                HistogramOpts::new(
                    SPOOL_FSYNC_SECONDS,
                    "Time of one spool group commit (write and fdatasync).",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )),
            forwarder_retries: define.counter(
                FORWARDER_RETRIES_TOTAL,
                "Spooled records sent to Kafka again after a failed or timed-out delivery.",
            ),
            spool_records_lost: define.counter(
                SPOOL_RECORDS_LOST_TOTAL,
                "Spooled records the disk corrupted or lost after their fsync, or that this version cannot decode, skipped by the forwarder.",
            ),
            handshakes: define.counters(
                HANDSHAKES_TOTAL,
                "Sender handshakes answered (Slack url_verification), by source; nothing is published.",
                by_source,
            ),
            dead_letters: define.counters(
                DEAD_LETTERS_TOTAL,
                "Events written to the dead-letter topic or directory instead of their topic, by source and reason.",
                &["source", "reason"],
            ),
            registry: registry.clone(),
        };
        metrics.reload_success.set(1);
        define
            .add(IntGaugeVec::new(
                Opts::new(BUILD_INFO, "Always 1; the labels tell the running version."),
                &["version"],
            ))
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        metrics
    }

    /// Resolves (and so exports, at zero) the series of a configured source.
    pub fn source(&self, source: &str) -> Arc<SourceMetrics> {
        for reason in DEAD_LETTER_REASONS {
            self.dead_letters.with_label_values(&[source, reason]);
        }
        Arc::new(SourceMetrics {
            accepted: self.accepted.with_label_values(&[source]),
            delivered: self.delivered.with_label_values(&[source]),
            failed: self.failed.with_label_values(&[source]),
            delivery_duration: self.delivery_duration.with_label_values(&[source]),
            request_duration: self.http_duration.with_label_values(&[source]),
            duplicates: self.duplicates.with_label_values(&[source]),
            body_bytes: self.body_bytes.with_label_values(&[source]),
            schema_violations: self.schema_violations.with_label_values(&[source]),
            handshakes: self.handshakes.with_label_values(&[source]),
        })
    }

    /// Counts one answered request.
    pub fn request(&self, source: &str, status: u16) {
        self.http_requests
            .with_label_values(&[source, &status.to_string()])
            .inc();
    }

    /// Counts one refused request.
    pub fn rejection(&self, source: &str, reason: &str) {
        self.rejections.with_label_values(&[source, reason]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        buffer
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
