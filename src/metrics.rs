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

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("metric definitions are static and valid");
            registry
                .register(Box::new(vec.clone()))
                .expect("metric names are unique");
            vec
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let vec = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("metric definitions are static and valid");
            registry
                .register(Box::new(vec.clone()))
                .expect("metric names are unique");
            vec
        };
        let http_requests = counter(
            HTTP_REQUESTS_TOTAL,
            "Webhook requests answered, by source and HTTP status.",
            &["source", "status"],
        );
        let http_duration = histogram(
            HTTP_REQUEST_DURATION_SECONDS,
            "Time from the request head to the response, by source.",
            &["source"],
        );
        let rejections = counter(
            REJECTIONS_TOTAL,
            "Requests refused, by source and problem code.",
            &["source", "reason"],
        );
        let accepted = counter(
            EVENTS_ACCEPTED_TOTAL,
            "Events answered 2xx (they reached their durability point), by source.",
            &["source"],
        );
        let delivered = counter(
            KAFKA_RECORDS_DELIVERED_TOTAL,
            "Records acknowledged by Kafka, by source.",
            &["source"],
        );
        let failed = counter(
            KAFKA_RECORDS_FAILED_TOTAL,
            "Records Kafka did not acknowledge (delivery error or message timeout), by source.",
            &["source"],
        );
        let delivery_duration = histogram(
            KAFKA_DELIVERY_DURATION_SECONDS,
            "Time from accepting an event to Kafka's acknowledgement, by source.",
            &["source"],
        );
        let duplicates = counter(
            DUPLICATES_TOTAL,
            "Events answered \"duplicate\" (seen within the idempotency window), by source.",
            &["source"],
        );
        let schema_violations = counter(
            SCHEMA_VIOLATIONS_TOTAL,
            "Bodies that failed their JSON Schema (refused in enforce mode, accepted in observe mode), by source.",
            &["source"],
        );
        let register = |metric: Box<dyn prometheus::core::Collector>| {
            registry.register(metric).expect("metric names are unique");
        };
        let body_bytes = HistogramVec::new(
            HistogramOpts::new(
                HTTP_REQUEST_BODY_BYTES,
                "Size of webhook request bodies read, by source.",
            )
            .buckets(BODY_BUCKETS.to_vec()),
            &["source"],
        )
        .expect("metric definitions are static and valid");
        register(Box::new(body_bytes.clone()));
        let in_flight = IntGauge::new(
            HTTP_REQUESTS_IN_FLIGHT,
            "Webhook requests being handled now.",
        )
        .expect("metric definitions are static and valid");
        register(Box::new(in_flight.clone()));
        let kafka = KafkaMetrics {
            queue_messages: IntGauge::new(
                KAFKA_QUEUE_MESSAGES,
                "Records in the producer's queue (librdkafka statistics).",
            )
            .expect("metric definitions are static and valid"),
            queue_bytes: IntGauge::new(
                KAFKA_QUEUE_BYTES,
                "Bytes in the producer's queue (librdkafka statistics).",
            )
            .expect("metric definitions are static and valid"),
            broker_rtt_seconds: prometheus::GaugeVec::new(
                Opts::new(
                    KAFKA_BROKER_RTT_SECONDS,
                    "Mean request round trip to each broker over the last statistics interval.",
                ),
                &["broker"],
            )
            .expect("metric definitions are static and valid"),
            broker_up: IntGaugeVec::new(
                Opts::new(
                    KAFKA_BROKER_UP,
                    "1 while the producer's connection to the broker is up, else 0.",
                ),
                &["broker"],
            )
            .expect("metric definitions are static and valid"),
        };
        register(Box::new(kafka.queue_messages.clone()));
        register(Box::new(kafka.queue_bytes.clone()));
        register(Box::new(kafka.broker_rtt_seconds.clone()));
        register(Box::new(kafka.broker_up.clone()));
        let reload_success = IntGauge::new(
            CONFIG_RELOAD_SUCCESS,
            "1 when the last configuration reload succeeded (or none was tried), 0 when it was refused.",
        )
        .expect("metric definitions are static and valid");
        register(Box::new(reload_success.clone()));
        reload_success.set(1);
        let tls_certificate_expiry = IntGauge::new(
            TLS_CERTIFICATE_EXPIRY,
            "When the ingress TLS certificate expires (Unix time, seconds); 0 when the ingress serves plain HTTP.",
        )
        .expect("metric definitions are static and valid");
        register(Box::new(tls_certificate_expiry.clone()));
        let ready = IntGauge::new(READY, "1 while the relay accepts webhooks, else 0.")
            .expect("metric definitions are static and valid");
        register(Box::new(ready.clone()));
        let spool_records = IntGauge::new(
            SPOOL_RECORDS,
            "Records in the spool not yet acknowledged by Kafka.",
        )
        .expect("metric definitions are static and valid");
        register(Box::new(spool_records.clone()));
        let spool_bytes = IntGauge::new(
            SPOOL_BYTES,
            "Bytes of the records in the spool not yet acknowledged by Kafka.",
        )
        .expect("metric definitions are static and valid");
        register(Box::new(spool_bytes.clone()));
        let spool_oldest_age_seconds = Gauge::new(
            SPOOL_OLDEST_AGE_SECONDS,
            "Age of the oldest record in the spool not yet acknowledged by Kafka (0 when empty).",
        )
        .expect("metric definitions are static and valid");
        register(Box::new(spool_oldest_age_seconds.clone()));
        let spool_fsync_seconds = Histogram::with_opts(
            HistogramOpts::new(
                SPOOL_FSYNC_SECONDS,
                "Time of one spool group commit (write and fdatasync).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("metric definitions are static and valid");
        register(Box::new(spool_fsync_seconds.clone()));
        let forwarder_retries = IntCounter::new(
            FORWARDER_RETRIES_TOTAL,
            "Spooled records sent to Kafka again after a failed or timed-out delivery.",
        )
        .expect("metric definitions are static and valid");
        register(Box::new(forwarder_retries.clone()));
        let spool_records_lost = IntCounter::new(
            SPOOL_RECORDS_LOST_TOTAL,
            "Spooled records the disk corrupted or lost after their fsync, or that this version cannot decode, skipped by the forwarder.",
        )
        .expect("metric definitions are static and valid");
        register(Box::new(spool_records_lost.clone()));
        let handshakes = counter(
            HANDSHAKES_TOTAL,
            "Sender handshakes answered (Slack url_verification), by source; nothing is published.",
            &["source"],
        );
        let dead_letters = counter(
            DEAD_LETTERS_TOTAL,
            "Events written to the dead-letter topic or directory instead of their topic, by source and reason.",
            &["source", "reason"],
        );
        let build_info = IntGaugeVec::new(
            Opts::new(BUILD_INFO, "Always 1; the labels tell the running version."),
            &["version"],
        )
        .expect("metric definitions are static and valid");
        registry
            .register(Box::new(build_info.clone()))
            .expect("metric names are unique");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        Metrics {
            registry,
            http_requests,
            http_duration,
            rejections,
            accepted,
            delivered,
            failed,
            delivery_duration,
            duplicates,
            body_bytes,
            in_flight,
            kafka,
            schema_violations,
            handshakes,
            reload_success,
            tls_certificate_expiry,
            ready,
            spool_records,
            spool_bytes,
            spool_oldest_age_seconds,
            spool_fsync_seconds,
            forwarder_retries,
            spool_records_lost,
            dead_letters,
        }
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
