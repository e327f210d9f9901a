//! An event's identity when the sender gives no id of its own: which body fields name one
//! occurrence of an event, per event type, and the deterministic id (a UUIDv5) made from them.
//!
//! Two different occurrences must never get the same id: the second would be answered
//! `"duplicate"` and never published, and a sender such as TagMango does not send an event again
//! once it was answered 200. So:
//! - identity fields are chosen per event type (`idempotency.events`), because what names one
//!   order is not what names one course milestone;
//! - when a listed field is absent, `null` or an empty string, the id is the hash of the whole
//!   body instead (a constant stand-in would make every such event of one type the same event);
//! - the hashed name encodes every part with its length and, for body values, its JSON type, so
//!   that no two different lists of values make the same name (`"a\u001fb"`,`"c"` vs
//!   `"a"`,`"b\u001fc"`; `1` vs `"1"`).
//!
//! An exact resend repeats the body byte for byte, so it gets the same id under every rule.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_json::value::RawValue;
use uuid::Uuid;

use crate::json::{self, Pointer};
use crate::names::{EventFilter, EventType, SourceName};
use crate::settings::{ConfigErrors, IdempotencySettings};

/// Namespace of hookrelay's name-based (UUIDv5) event ids.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_2a3e_8d4b_4e6a_9c1f_0b7d_3e2a_6c58);

/// What one occurrence of an event is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdFields {
    /// The whole body.
    Body,
    /// These body fields (the whole body when one of them is missing).
    Fields(Vec<Pointer>),
}

/// The identity of the events one pattern matches: its fields and its deduplication window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRule {
    pub fields: IdFields,
    /// A repeat within this long is answered `"duplicate"`; zero means no window.
    pub ttl: Duration,
}

/// A source's identity rules: the default and those of particular events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    default: IdentityRule,
    exact: HashMap<String, IdentityRule>,
    /// `(prefix, rule)` from `prefix*` patterns, longest prefix first.
    prefixes: Vec<(String, IdentityRule)>,
}

impl Identity {
    /// Parses `idempotency`; problems are pushed to `errors` under `path` (`sources.NAME`).
    pub fn from_settings(
        settings: &IdempotencySettings,
        events: &EventFilter,
        path: &str,
        errors: &mut ConfigErrors,
    ) -> Identity {
        let path = format!("{path}.idempotency");
        let default_ttl = Duration::from_secs(settings.ttl_secs);
        let default = IdentityRule {
            fields: parse_fields(&settings.fields, &format!("{path}.fields"), errors),
            ttl: default_ttl,
        };
        let mut exact = HashMap::new();
        let mut prefixes = Vec::new();
        for (pattern, rule) in &settings.events {
            let key = format!("{path}.events.{pattern:?}");
            let rule_path = format!("{key}.fields");
            let parsed = IdentityRule {
                fields: parse_fields(&rule.fields, &rule_path, errors),
                ttl: rule.ttl_secs.map_or(default_ttl, Duration::from_secs),
            };
            let matches_listed = |matches: &dyn Fn(&str) -> bool| match events {
                EventFilter::Any => true,
                EventFilter::Only(list) => list.iter().any(|event| matches(event)),
            };
            match pattern.strip_suffix('*') {
                Some(prefix) if EventType::parse(prefix).is_some() || prefix.is_empty() => {
                    if !matches_listed(&|event| event.starts_with(prefix)) {
                        errors.push(key, "matches none of the source's events");
                    }
                    prefixes.push((prefix.to_owned(), parsed));
                }
                None if EventType::parse(pattern).is_some() => {
                    if !matches_listed(&|event| event == pattern) {
                        errors.push(key, "is not one of the source's events");
                    }
                    exact.insert(pattern.clone(), parsed);
                }
                _ => errors.push(
                    key,
                    "write an event type (order.created.completed) or a prefix ending in * (order.*)",
                ),
            }
        }
        prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Identity {
            default,
            exact,
            prefixes,
        }
    }

    /// The rule of `event`: its exact entry, else its longest matching prefix, else the default.
    pub fn rule(&self, event: &str) -> &IdentityRule {
        self.exact
            .get(event)
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(prefix, _)| event.starts_with(prefix.as_str()))
                    .map(|(_, rule)| rule)
            })
            .unwrap_or(&self.default)
    }

    /// Whether any event of this source has a deduplication window.
    pub fn has_window(&self) -> bool {
        std::iter::once(&self.default)
            .chain(self.exact.values())
            .chain(self.prefixes.iter().map(|(_, rule)| rule))
            .any(|rule| !rule.ttl.is_zero())
    }
}

fn parse_fields(fields: &[String], path: &str, errors: &mut ConfigErrors) -> IdFields {
    if fields == ["body"] {
        return IdFields::Body;
    }
    if fields.is_empty() {
        errors.push(path, "list at least one JSON pointer (or [\"body\"])");
    }
    let mut pointers = Vec::with_capacity(fields.len());
    for (index, field) in fields.iter().enumerate() {
        match Pointer::parse(field) {
            Ok(pointer) => pointers.push(pointer),
            Err(reason) => errors.push(format!("{path}[{index}]"), reason),
        }
    }
    IdFields::Fields(pointers)
}

/// The event id of a body under `rule`: a UUIDv5 of the source, the event type and the rule's
/// field values, or of the whole body when the rule says so or a field is missing.
pub fn derive_id(
    source: &SourceName,
    event: &EventType,
    rule: &IdentityRule,
    body: &[u8],
    document: &RawValue,
) -> Uuid {
    let mut name = Name::new(source, event);
    if let IdFields::Fields(pointers) = &rule.fields {
        name.push(b'F', b"");
        // One pass over the body for all the fields, not one per field.
        let complete = json::lookup_all(document, pointers)
            .into_iter()
            .all(|value| match value.filter(|value| names_one(value)) {
                Some(value) => {
                    name.push_value(value);
                    true
                }
                None => false,
            });
        if complete {
            return name.uuid();
        }
        name = Name::new(source, event);
    }
    name.push(b'B', body);
    name.uuid()
}

/// The value at `pointer`, unless it is absent, `null` or `""`: none of those tells one
/// occurrence from another.
fn present<'a>(pointer: &Pointer, document: &'a RawValue) -> Option<&'a RawValue> {
    pointer.lookup(document).filter(|value| names_one(value))
}

/// Whether a present value can tell occurrences apart: not `null`, not `""`.
fn names_one(value: &RawValue) -> bool {
    !matches!(value.get(), "null" | "\"\"")
}

/// A UUIDv5 name, hashed as its parts come (no buffer for the whole name). Every part is a tag
/// byte, its length (u64, little endian) and its bytes, so the name of one list of parts is never
/// the name of another.
struct Name(sha1::Sha1);

impl Name {
    fn new(source: &SourceName, event: &EventType) -> Name {
        use sha1::Digest;
        let mut hasher = sha1::Sha1::new();
        hasher.update(EVENT_ID_NAMESPACE.as_bytes());
        let mut name = Name(hasher);
        name.push(b'S', source.as_str().as_bytes());
        name.push(b'E', event.as_str().as_bytes());
        name
    }

    fn push(&mut self, tag: u8, bytes: &[u8]) {
        use sha1::Digest;
        self.0.update([tag]);
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// A body value: strings by their unescaped text (`"\u0041"` and `"A"` are the same value),
    /// anything else by its JSON text, each tagged with its JSON type.
    fn push_value(&mut self, value: &RawValue) {
        let raw = value.get();
        let tag = match raw.as_bytes().first() {
            Some(b'"') => b's',
            Some(b't' | b'f') => b'b',
            Some(b'{') => b'o',
            Some(b'[') => b'a',
            _ => b'n',
        };
        if tag == b's' {
            self.push(tag, json::text(value).as_bytes());
        } else {
            self.push(tag, raw.as_bytes());
        }
    }

    fn uuid(self) -> Uuid {
        let digest = sha1::Digest::finalize(self.0);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_sha1_bytes(bytes).into_uuid()
    }
}

/// `check-config`'s warnings for a source whose `samples` template names example bodies: a listed
/// event whose sample lacks a field its identity rule lists (its ids would be hashes of the whole
/// body). Returns `(key path, message)` pairs.
pub fn sample_warnings(
    source: &SourceName,
    identity: &Identity,
    events: &EventFilter,
    template: &str,
) -> Vec<(String, String)> {
    let EventFilter::Only(list) = events else {
        return Vec::new();
    };
    let listed: BTreeMap<&str, ()> = list.iter().map(|event| (event.as_str(), ())).collect();
    let mut warnings = Vec::new();
    for event in listed.keys() {
        let IdFields::Fields(pointers) = &identity.rule(event).fields else {
            continue;
        };
        let path = template
            .replace("{source}", source.as_str())
            .replace("{event}", event);
        let Ok(body) = std::fs::read(Path::new(&path)) else {
            continue;
        };
        let key = format!("sources.{source}.idempotency");
        let Ok(document) = json::validate(&body) else {
            warnings.push((
                key,
                format!("the sample of {event} ({path}) is not valid JSON"),
            ));
            continue;
        };
        for pointer in pointers {
            if present(pointer, document).is_none() {
                warnings.push((
                    key.clone(),
                    format!(
                        "the sample of {event} ({path}) has no {}: ids of {event} would be hashes of the whole body; give {event} its own fields under idempotency.events",
                        pointer.as_str()
                    ),
                ));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::EventIdentitySettings;

    fn source() -> SourceName {
        SourceName::parse("tagmango").unwrap()
    }

    fn event(name: &str) -> EventType {
        EventType::parse(name).unwrap()
    }

    fn fields(pointers: &[&str]) -> IdentityRule {
        IdentityRule {
            fields: IdFields::Fields(
                pointers
                    .iter()
                    .map(|p| Pointer::parse(p).unwrap())
                    .collect(),
            ),
            ttl: Duration::from_secs(60),
        }
    }

    fn id(rule: &IdentityRule, event_name: &str, body: &str) -> Uuid {
        let document = json::validate(body.as_bytes()).unwrap();
        derive_id(
            &source(),
            &event(event_name),
            rule,
            body.as_bytes(),
            document,
        )
    }

    #[test]
    fn values_are_encoded_with_their_length_and_type() {
        let rule = fields(&["/a", "/b"]);
        let e = "order.created.completed";
        // A separator byte inside a value cannot move a boundary.
        assert_ne!(
            id(&rule, e, r#"{"a":"x\u001fy","b":"z"}"#),
            id(&rule, e, r#"{"a":"x","b":"y\u001fz"}"#)
        );
        // A number is not the string of its digits.
        assert_ne!(
            id(&rule, e, r#"{"a":1,"b":"z"}"#),
            id(&rule, e, r#"{"a":"1","b":"z"}"#)
        );
        assert_ne!(
            id(&rule, e, r#"{"a":true,"b":"z"}"#),
            id(&rule, e, r#"{"a":"true","b":"z"}"#)
        );
        // A NUL value is a value, not a missing field.
        assert_ne!(
            id(&rule, e, r#"{"a":"\u0000","b":"z","n":1}"#),
            id(&rule, e, r#"{"b":"z","n":1}"#)
        );
        // The same string however it is escaped; the rest of the body does not matter.
        assert_eq!(
            id(&rule, e, r#"{"a":"A","b":"z","other":1}"#),
            id(&rule, e, r#"{"a":"\u0041","b":"z","other":2}"#)
        );
    }

    #[test]
    fn a_missing_field_falls_back_to_the_whole_body() {
        let rule = fields(&["/courseId", "/email"]);
        let e = "order.created.completed";
        let first = r#"{"email":"a@example.com","orderId":"o1"}"#;
        let second = r#"{"email":"a@example.com","orderId":"o2"}"#;
        assert_ne!(id(&rule, e, first), id(&rule, e, second));
        assert_eq!(id(&rule, e, first), id(&rule, e, first));
        // null and "" name no occurrence either.
        for blank in ["null", "\"\""] {
            let one = format!(r#"{{"courseId":{blank},"email":"a@example.com","n":1}}"#);
            let two = format!(r#"{{"courseId":{blank},"email":"a@example.com","n":2}}"#);
            assert_ne!(id(&rule, e, &one), id(&rule, e, &two), "{blank}");
        }
        // The body fallback is not the id of some field list.
        assert_eq!(
            id(
                &IdentityRule {
                    fields: IdFields::Body,
                    ttl: Duration::ZERO
                },
                e,
                first
            ),
            id(&rule, e, first)
        );
    }

    #[test]
    fn the_event_type_is_part_of_every_id() {
        let body = r#"{"orderId":"o1"}"#;
        for rule in [
            fields(&["/orderId"]),
            IdentityRule {
                fields: IdFields::Body,
                ttl: Duration::ZERO,
            },
        ] {
            assert_ne!(
                id(&rule, "order.created.initiated", body),
                id(&rule, "order.created.completed", body)
            );
        }
    }

    #[test]
    fn exact_events_win_over_prefixes_and_longer_prefixes_over_shorter() {
        let settings = IdempotencySettings {
            fields: vec!["body".to_owned()],
            ttl_secs: 86_400,
            max_entries: 10,
            events: [
                ("order.*", vec!["/orderId"], None),
                ("order.recurring.*", vec!["/subscriberId"], None),
                ("order.created.failed", vec!["/id"], Some(60)),
            ]
            .into_iter()
            .map(|(pattern, fields, ttl_secs)| {
                (
                    pattern.to_owned(),
                    EventIdentitySettings {
                        fields: fields.into_iter().map(str::to_owned).collect(),
                        ttl_secs,
                    },
                )
            })
            .collect(),
        };
        let mut errors = ConfigErrors::default();
        let identity =
            Identity::from_settings(&settings, &EventFilter::Any, "sources.t", &mut errors);
        assert!(errors.is_empty(), "{errors}");
        assert_eq!(
            identity.rule("order.created.completed"),
            &fields(&["/orderId"]).with_ttl(86_400)
        );
        assert_eq!(
            identity.rule("order.recurring.created"),
            &fields(&["/subscriberId"]).with_ttl(86_400)
        );
        assert_eq!(
            identity.rule("order.created.failed"),
            &fields(&["/id"]).with_ttl(60)
        );
        assert_eq!(identity.rule("user.deleted").fields, IdFields::Body);
    }

    #[test]
    fn patterns_must_match_a_listed_event() {
        let settings = IdempotencySettings {
            fields: vec!["body".to_owned()],
            ttl_secs: 1,
            max_entries: 10,
            events: [("ordr.*", "x"), ("user.delete", "y"), ("a/b", "z")]
                .into_iter()
                .map(|(pattern, _)| {
                    (
                        pattern.to_owned(),
                        EventIdentitySettings {
                            fields: vec!["/id".to_owned()],
                            ttl_secs: None,
                        },
                    )
                })
                .collect(),
        };
        let listed = EventFilter::Only(
            [
                "order.created.completed".to_owned(),
                "user.deleted".to_owned(),
            ]
            .into(),
        );
        let mut errors = ConfigErrors::default();
        Identity::from_settings(&settings, &listed, "sources.t", &mut errors);
        let text = errors.to_string();
        assert_eq!(errors.0.len(), 3, "{text}");
        assert!(text.contains("\"ordr.*\""), "{text}");
        assert!(text.contains("\"user.delete\""), "{text}");
        assert!(text.contains("\"a/b\""), "{text}");
    }

    impl IdentityRule {
        fn with_ttl(mut self, secs: u64) -> IdentityRule {
            self.ttl = Duration::from_secs(secs);
            self
        }
    }
}
