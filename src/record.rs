//! The Kafka record an event becomes, built in one place: the CloudEvents binary-mode headers
//! (`ce_*`, `content-type`) plus hookrelay's own (`hookrelay_auth`, forwarded `http_*` headers,
//! and a dead letter's `hookrelay_dead_reason` / `hookrelay_dead_topic`), and the size Kafka
//! measures it by. Plain data: the request path, the spool and the producer all use it.

use std::time::SystemTime;

use actix_web::http::header::{HeaderMap, HeaderName};

/// Header of a dead letter: why it is not on its topic (`record_too_large`, `schema_violation`...).
pub const DEAD_REASON_HEADER: &str = "hookrelay_dead_reason";
/// Header of a dead letter: the topic it was meant for.
pub const DEAD_TOPIC_HEADER: &str = "hookrelay_dead_topic";

/// A record on its way to its durability point; the value is the request body, untouched.
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
    pub value: &'a [u8],
    pub received: SystemTime,
}

impl Outgoing<'_> {
    /// Its size as Kafka checks it against `message.max.bytes` ([`wire_size`]).
    pub fn wire_size(&self) -> usize {
        wire_size(self.key, self.value, self.headers)
    }
}

/// What the CloudEvents headers say about an event.
pub struct CloudEvent<'a> {
    pub id: &'a str,
    /// `/sources/{name}`.
    pub source: &'a str,
    pub event_type: &'a str,
    /// RFC 3339, UTC, milliseconds.
    pub time: &'a str,
    /// The request's `Content-Type`, as sent.
    pub content_type: &'a [u8],
    /// How the request was authenticated (`token`, `hmac-github`...).
    pub auth: &'a str,
}

impl<'a> CloudEvent<'a> {
    /// The record's headers: CloudEvents binary content mode, then `hookrelay_auth`.
    pub fn headers(&self) -> Vec<(&'a str, &'a [u8])> {
        vec![
            ("ce_specversion", b"1.0"),
            ("ce_id", self.id.as_bytes()),
            ("ce_source", self.source.as_bytes()),
            ("ce_type", self.event_type.as_bytes()),
            ("ce_time", self.time.as_bytes()),
            ("content-type", self.content_type),
            ("hookrelay_auth", self.auth.as_bytes()),
        ]
    }
}

/// Adds the sender's headers a source forwards (`forward_headers`), each under its record name
/// (`http_<lower-case name>`), every value of a repeated header.
pub fn forward<'a>(
    headers: &mut Vec<(&'a str, &'a [u8])>,
    forwarded: &'a [(HeaderName, String)],
    request: &'a HeaderMap,
) {
    for (name, record_name) in forwarded {
        for value in request.get_all(name) {
            headers.push((record_name, value.as_bytes()));
        }
    }
}

/// Marks a record as a dead letter: why, and the topic it was meant for.
pub fn mark_dead<'a>(headers: &mut Vec<(&'a str, &'a [u8])>, reason: &'a str, topic: &'a str) {
    headers.push((DEAD_REASON_HEADER, reason.as_bytes()));
    headers.push((DEAD_TOPIC_HEADER, topic.as_bytes()));
}

/// The size librdkafka gives a record when it checks it against `message.max.bytes` (its
/// `rd_kafka_msg_max_wire_size`): the worst-case v2 record envelope (36 bytes of varints), the key,
/// the value, and each header's name and value with two length varints.
pub fn wire_size(key: &[u8], value: &[u8], headers: &[(&str, &[u8])]) -> usize {
    const ENVELOPE: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
    const HEADER_VARINTS: usize = 5 + 5;
    ENVELOPE
        + key.len()
        + value.len()
        + headers
            .iter()
            .map(|(name, value)| HEADER_VARINTS + name.len() + value.len())
            .sum::<usize>()
}
