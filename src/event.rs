//! An accepted webhook's identity: event id, type, key and receive time, derived from the
//! source's rules and the raw body. The body itself is never copied or changed.
//!
//! The event id is the sender's own (`webhook-id`, `X-GitHub-Delivery`, `/id`...) where the
//! source names where it is, else a hash of the identity fields of its event type
//! ([`crate::identity`]), else a UUIDv7.

use std::time::SystemTime;

use actix_web::HttpRequest;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::identity;
use crate::source::{EventType, Source};

/// What the Kafka record says about an event besides its bytes.
#[derive(Debug, Clone)]
pub struct Event {
    /// CloudEvents `id`: stable for a repeat of the same event when the source has idempotency
    /// fields, so consumers can deduplicate on it.
    pub id: String,
    pub event_type: EventType,
    pub key: Vec<u8>,
    pub received: SystemTime,
}

impl Event {
    pub fn new(
        source: &Source,
        event_type: EventType,
        request: &HttpRequest,
        body: &[u8],
        document: &RawValue,
        received: SystemTime,
    ) -> Event {
        let id = source
            .sender_event_id(request, document)
            .unwrap_or_else(|| event_id(source, &event_type, body, document));
        let key = source
            .key_rule
            .as_ref()
            .and_then(|rule| rule.key_bytes(request, document))
            .unwrap_or_else(|| id.as_bytes().to_vec());
        Event {
            id,
            event_type,
            key,
            received,
        }
    }

    /// CloudEvents `time`: RFC 3339 in UTC with millisecond precision.
    pub fn time(&self) -> String {
        humantime::format_rfc3339_millis(self.received).to_string()
    }
}

fn event_id(source: &Source, event_type: &EventType, body: &[u8], document: &RawValue) -> String {
    let uuid = match &source.identity {
        None => Uuid::now_v7(),
        Some(identity) => identity::derive_id(
            &source.name,
            event_type,
            identity.rule(event_type.as_str()),
            body,
            document,
        ),
    };
    uuid.hyphenated().to_string()
}
