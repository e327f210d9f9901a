//! An accepted webhook's identity: event id, type, key and receive time, derived from the
//! source's rules and the raw body. The body itself is never copied or changed.
//!
//! The event id is the sender's own (`webhook-id`, `X-GitHub-Delivery`, `/id`...) where the
//! source names where it is, else a hash of the idempotency fields, else a UUIDv7.

use std::time::SystemTime;

use actix_web::HttpRequest;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::json;
use crate::source::{EventType, IdRule, KeyRule, Source};

/// Namespace of hookrelay's name-based (UUIDv5) event ids.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_2a3e_8d4b_4e6a_9c1f_0b7d_3e2a_6c58);

/// Separates the parts hashed into an event id, so that ("ab","c") and ("a","bc") differ.
const SEPARATOR: u8 = 0x1f;
/// Stands for an idempotency field the body does not have.
const ABSENT: u8 = 0x00;

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
        let key = match &source.key_rule {
            Some(KeyRule::Field(pointer)) => pointer
                .lookup(document)
                .map(|value| json::text(value).into_owned().into_bytes()),
            Some(KeyRule::Header(name)) => request
                .headers()
                .get(name)
                .map(|value| value.as_bytes().to_vec()),
            None => None,
        }
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
    let uuid = match &source.id_rule {
        IdRule::Random => Uuid::now_v7(),
        IdRule::Body => name_based(&[source.name.as_str().as_bytes(), &[SEPARATOR], body]),
        IdRule::Fields(pointers) => {
            let mut name = Name::new();
            name.push(source.name.as_str().as_bytes());
            name.push(&[SEPARATOR]);
            name.push(event_type.as_str().as_bytes());
            for pointer in pointers {
                name.push(&[SEPARATOR]);
                match pointer.lookup(document) {
                    Some(value) => name.push(json::text(value).as_bytes()),
                    None => name.push(&[ABSENT]),
                }
            }
            name.uuid()
        }
    };
    uuid.hyphenated().to_string()
}

/// The UUIDv5 (RFC 9562) of the concatenated `parts` in hookrelay's namespace: the same id as
/// `Uuid::new_v5`, hashed with the `sha1` crate, which uses the CPU's SHA instructions where
/// there are some (`uuid`'s own SHA-1 is portable code, 1 % of the request path's CPU when the
/// whole body is the identity).
fn name_based(parts: &[&[u8]]) -> Uuid {
    let mut name = Name::new();
    for part in parts {
        name.push(part);
    }
    name.uuid()
}

/// A UUIDv5 name, hashed as its parts come (no buffer for the whole name).
struct Name(sha1::Sha1);

impl Name {
    fn new() -> Name {
        use sha1::Digest;
        let mut hasher = sha1::Sha1::new();
        hasher.update(EVENT_ID_NAMESPACE.as_bytes());
        Name(hasher)
    }

    fn push(&mut self, part: &[u8]) {
        sha1::Digest::update(&mut self.0, part);
    }

    fn uuid(self) -> Uuid {
        let digest = sha1::Digest::finalize(self.0);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_sha1_bytes(bytes).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Event ids must not change across versions: the deduplication window and consumers rely on
    /// a repeat of an event getting the same id.
    #[test]
    fn name_based_ids_are_uuid_v5() {
        for name in [
            &b""[..],
            b"tagmango\x1fcourse.completed.50",
            &[0xffu8; 200][..],
        ] {
            assert_eq!(name_based(&[name]), Uuid::new_v5(&EVENT_ID_NAMESPACE, name));
        }
        assert_eq!(
            name_based(&[b"github", &[SEPARATOR], b"{}"]),
            Uuid::new_v5(&EVENT_ID_NAMESPACE, b"github\x1f{}")
        );
    }
}
