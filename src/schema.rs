//! JSON Schema validation per source and event (`schema`, `schema_mode`).
//!
//! A source's `schema` is a path template (`config/schemas/{source}/{event}.json`, relative to
//! the working directory). Every schema is read and compiled once at start, so a missing or
//! invalid schema is a configuration error, not a request-time surprise:
//!
//! - a source with an `events` list needs a schema file for each listed event;
//! - a source without one validates the events whose file exists when the relay starts (the
//!   directory is listed; `{event}` may then appear only in the file name), and does not
//!   validate the others;
//! - a path without `{event}` names one schema for every event of the source.
//!
//! Only when a schema applies is the body parsed into a `serde_json::Value` (the relay otherwise
//! never builds a document tree). A violation is described by the JSON pointer of the failing
//! place and the schema keyword that failed: never by the value, which may be personal data.
//! `enforce` mode refuses the body (422); `observe` mode accepts it and only counts and logs.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use jsonschema::Validator;

use crate::json::JsonError;
use crate::names::{EventFilter, EventType, SourceName};

/// Longest pointer reported; longer ones (deep paths made of long keys) are cut.
const MAX_POINTER_LEN: usize = 256;

pub use crate::settings::SchemaMode;

/// Where and how a body failed its schema, without any of its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the failing place (`/email` for a missing required `email`).
    pub pointer: String,
    /// The schema keyword that failed (`required`, `type`, `pattern`...).
    pub keyword: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = if self.pointer.is_empty() {
            "the top level"
        } else {
            &self.pointer
        };
        write!(f, "{place} ({})", self.keyword)
    }
}

/// A source's compiled schemas, by event type.
#[derive(Clone)]
pub struct Schemas {
    pub mode: SchemaMode,
    by_event: HashMap<String, Arc<Validator>>,
    /// The schema of a path without `{event}`.
    every_event: Option<Arc<Validator>>,
}

impl fmt::Debug for Schemas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut events: Vec<&String> = self.by_event.keys().collect();
        events.sort();
        f.debug_struct("Schemas")
            .field("mode", &self.mode)
            .field("events", &events)
            .finish()
    }
}

impl Schemas {
    /// Reads and compiles the schemas of a source; the error is the reason, for the key `schema`.
    pub fn load(
        template: &str,
        mode: SchemaMode,
        source: &SourceName,
        events: &EventFilter,
    ) -> Result<Schemas, String> {
        let template = template.replace("{source}", source.as_str());
        if !template.contains("{event}") {
            return Ok(Schemas {
                mode,
                by_event: HashMap::new(),
                every_event: Some(Arc::new(compile(Path::new(&template))?)),
            });
        }
        let mut compiled: HashMap<PathBuf, Arc<Validator>> = HashMap::new();
        let mut by_event = HashMap::new();
        let mut add = |event: &str, path: PathBuf| -> Result<(), String> {
            let validator = match compiled.get(&path) {
                Some(validator) => validator.clone(),
                None => {
                    let validator = Arc::new(compile(&path)?);
                    compiled.insert(path, validator.clone());
                    validator
                }
            };
            by_event.insert(event.to_owned(), validator);
            Ok(())
        };
        match events {
            EventFilter::Only(list) => {
                let mut list: Vec<&String> = list.iter().collect();
                list.sort();
                for event in list {
                    add(event, PathBuf::from(template.replace("{event}", event)))
                        .map_err(|reason| format!("event {event}: {reason}"))?;
                }
            }
            EventFilter::Any => {
                for (event, path) in existing_files(&template)? {
                    add(&event, path).map_err(|reason| format!("event {event}: {reason}"))?;
                }
            }
        }
        Ok(Schemas {
            mode,
            by_event,
            every_event: None,
        })
    }

    /// Whether a schema applies to `event`.
    pub fn covers(&self, event: &EventType) -> bool {
        self.validator(event).is_some()
    }

    fn validator(&self, event: &EventType) -> Option<&Arc<Validator>> {
        self.by_event
            .get(event.as_str())
            .or(self.every_event.as_ref())
    }

    /// Checks a (well-formed, depth-checked) body against the schema of `event`, if it has one.
    /// `Err` when the body cannot be parsed into a document (a number beyond `f64`, nesting
    /// beyond serde_json's limit of 128).
    pub fn check(&self, event: &EventType, body: &[u8]) -> Result<Option<Violation>, JsonError> {
        let Some(validator) = self.validator(event) else {
            return Ok(None);
        };
        let document: serde_json::Value =
            serde_json::from_slice(body).map_err(|error| JsonError::Syntax {
                reason: crate::json::syntax_reason(&error),
                line: error.line(),
                column: error.column(),
            })?;
        Ok(validator.validate(&document).err().map(|error| {
            let mut pointer = error.instance_path().as_str().to_owned();
            if let ValidationErrorKind::Required { property } = error.kind() {
                if let Some(name) = property.as_str() {
                    pointer.push('/');
                    pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
                }
            }
            Violation {
                pointer: truncate(pointer),
                keyword: error.kind().keyword().to_owned(),
            }
        }))
    }
}

fn truncate(mut pointer: String) -> String {
    if pointer.len() > MAX_POINTER_LEN {
        let mut end = MAX_POINTER_LEN;
        while !pointer.is_char_boundary(end) {
            end -= 1;
        }
        pointer.truncate(end);
        pointer.push('…');
    }
    pointer
}

fn compile(path: &Path) -> Result<Validator, String> {
    let text = std::fs::read(path)
        .map_err(|error| format!("cannot read the schema {}: {error}", path.display()))?;
    let schema: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|error| format!("the schema {} is not JSON: {error}", path.display()))?;
    jsonschema::validator_for(&schema)
        .map_err(|error| format!("{} is not a valid JSON Schema: {error}", path.display()))
}

/// For a source without an `events` list: the events whose schema file exists, found by listing
/// the directory of the template (where `{event}` may appear only in the file name).
fn existing_files(template: &str) -> Result<Vec<(String, PathBuf)>, String> {
    let path = Path::new(template);
    let (directory, file) = match (path.parent(), path.file_name().and_then(|f| f.to_str())) {
        (Some(directory), Some(file)) => (directory, file),
        _ => return Err(format!("{template:?} does not name a file")),
    };
    if directory.to_string_lossy().contains("{event}") {
        return Err(
            "without an events list, {event} may appear only in the file name of the schema path"
                .to_owned(),
        );
    }
    let Some((prefix, suffix)) = file.split_once("{event}") else {
        return Err(format!("{template:?} does not name a file"));
    };
    let directory = if directory.as_os_str().is_empty() {
        Path::new(".")
    } else {
        directory
    };
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(format!("cannot list {}: {error}", directory.display())),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let event = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .and_then(EventType::parse);
        if let Some(event) = event {
            found.push((event.as_str().to_owned(), entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn manifest(relative: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
    }

    fn event(text: &str) -> EventType {
        EventType::parse(text).unwrap()
    }

    fn tagmango(events: &[&str]) -> Schemas {
        let template = manifest("config/schemas/{source}/{event}.json");
        Schemas::load(
            template.to_str().unwrap(),
            SchemaMode::Enforce,
            &SourceName::parse("tagmango").unwrap(),
            &EventFilter::Only(events.iter().map(|e| (*e).to_owned()).collect()),
        )
        .unwrap()
    }

    /// The events listed in the shipped configuration.
    fn configured_events() -> Vec<String> {
        let text = std::fs::read_to_string(manifest("config/hookrelay.toml")).unwrap();
        let start = text.find("events = [").unwrap() + "events = [".len();
        let end = start + text[start..].find(']').unwrap();
        text[start..end]
            .split(',')
            .map(|item| item.trim().trim_matches('"').to_owned())
            .filter(|item| !item.is_empty())
            .collect()
    }

    #[test]
    fn every_configured_tagmango_event_has_a_schema_that_accepts_its_sample() {
        let events = configured_events();
        let names: Vec<&str> = events.iter().map(String::as_str).collect();
        let schemas = tagmango(&names);
        let samples = std::fs::read_dir(manifest("samples/tagmango")).unwrap();
        let mut checked = HashSet::new();
        for entry in samples.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".json") else {
                continue;
            };
            let body = std::fs::read(entry.path()).unwrap();
            assert_eq!(schemas.check(&event(name), &body), Ok(None), "{name}");
            checked.insert(name.to_owned());
        }
        assert_eq!(checked.len(), 7);
    }

    #[test]
    fn a_missing_required_field_is_reported_by_its_pointer_only() {
        let schemas = tagmango(&["course.completed.50"]);
        let body = br#"{"name":"Secret Name","phone":98765,"courseId":"c1"}"#;
        let violation = schemas
            .check(&event("course.completed.50"), body)
            .unwrap()
            .unwrap();
        assert_eq!(violation.pointer, "/email");
        assert_eq!(violation.keyword, "required");
        assert_eq!(violation.to_string(), "/email (required)");
    }

    #[test]
    fn a_wrongly_typed_field_is_reported_without_its_value() {
        let schemas = tagmango(&["course.completed.50"]);
        let body = br#"{"email":"a@example.com","phone":["98765"],"courseId":"c1"}"#;
        let violation = schemas
            .check(&event("course.completed.50"), body)
            .unwrap()
            .unwrap();
        assert_eq!(violation.pointer, "/phone");
        assert!(!violation.to_string().contains("98765"));
    }

    #[test]
    fn phone_may_be_a_number_or_a_string_and_coupons_may_be_null() {
        let schemas = tagmango(&["order.created.completed", "webinar.reminder.15min"]);
        let order = br#"{"email":"a@x","orderId":"o1","phone":"+91 98765","coupon":null,"affiliateId":null,"Custom Field":1}"#;
        let webinar = br#"{"email":"a@x","webinarId":"w1","phone":98765}"#;
        assert_eq!(
            schemas.check(&event("order.created.completed"), order),
            Ok(None)
        );
        assert_eq!(
            schemas.check(&event("webinar.reminder.15min"), webinar),
            Ok(None)
        );
    }

    #[test]
    fn events_without_a_schema_are_not_checked() {
        let schemas = tagmango(&["course.completed.50"]);
        assert!(!schemas.covers(&event("other")));
        assert_eq!(schemas.check(&event("other"), b"[]"), Ok(None));
    }

    #[test]
    fn a_listed_event_without_a_schema_file_is_a_configuration_error() {
        let template = manifest("config/schemas/{source}/{event}.json");
        let error = Schemas::load(
            template.to_str().unwrap(),
            SchemaMode::Enforce,
            &SourceName::parse("tagmango").unwrap(),
            &EventFilter::Only(HashSet::from(["no.such.event".to_owned()])),
        )
        .unwrap_err();
        assert!(
            error.starts_with("event no.such.event: cannot read the schema"),
            "{error}"
        );
    }

    #[test]
    fn without_an_events_list_the_existing_files_are_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("push.json"), r#"{"required":["ref"]}"#).unwrap();
        std::fs::write(dir.path().join("README.md"), "not a schema").unwrap();
        let template = dir.path().join("{event}.json");
        let schemas = Schemas::load(
            template.to_str().unwrap(),
            SchemaMode::Observe,
            &SourceName::parse("gh").unwrap(),
            &EventFilter::Any,
        )
        .unwrap();
        assert!(schemas.covers(&event("push")));
        assert!(!schemas.covers(&event("README")));
        assert_eq!(
            schemas
                .check(&event("push"), b"{}")
                .unwrap()
                .unwrap()
                .pointer,
            "/ref"
        );

        std::fs::write(dir.path().join("bad.json"), r#"{"type":12}"#).unwrap();
        let error = Schemas::load(
            template.to_str().unwrap(),
            SchemaMode::Observe,
            &SourceName::parse("gh").unwrap(),
            &EventFilter::Any,
        )
        .unwrap_err();
        assert!(error.contains("is not a valid JSON Schema"), "{error}");
    }
}
