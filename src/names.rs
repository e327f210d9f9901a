//! The names the configuration and the request path share: a source's name, an event type, and
//! which events a source accepts. A leaf: it knows nothing of the rest of the relay.

use std::collections::HashSet;
use std::fmt;

/// Longest event type accepted from a path segment or the configuration.
pub const MAX_EVENT_LEN: usize = 200;
/// Kafka's limit on topic names.
pub const MAX_TOPIC_LEN: usize = 249;

/// The characters Kafka allows in a topic name; event types and source names use the same set
/// so that they can always be substituted into a topic.
pub fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A source's name, as in `/hooks/{source}` and `[sources.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceName(String);

impl SourceName {
    pub fn parse(name: &str) -> Result<SourceName, String> {
        if name.is_empty() || name.len() > 100 || !name.chars().all(is_topic_char) {
            return Err("a source name is 1 to 100 characters of A-Z a-z 0-9 . _ -".to_owned());
        }
        Ok(SourceName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event type (`course.completed.50`): the CloudEvents `type` and part of the topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventType(String);

impl EventType {
    pub fn parse(event: &str) -> Option<EventType> {
        let valid =
            !event.is_empty() && event.len() <= MAX_EVENT_LEN && event.chars().all(is_topic_char);
        valid.then(|| EventType(event.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EventType {
    /// `{source}.webhook`: the type of an event its sender names nowhere.
    pub fn fallback(source: &SourceName) -> EventType {
        EventType(format!("{source}.webhook"))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl EventType {
    /// An event type named by the sender (a header or body field), made fit for a topic name:
    /// `/` and `:` become `.` (Shopify's `orders/create` is `orders.create`), any other character
    /// outside `A-Z a-z 0-9 . _ -` becomes `_`. `None` when it is longer than [`MAX_EVENT_LEN`].
    pub fn sanitize(named: &str) -> Option<EventType> {
        let event: String = named
            .chars()
            .map(|c| match c {
                c if is_topic_char(c) => c,
                '/' | ':' => '.',
                _ => '_',
            })
            .collect();
        EventType::parse(&event)
    }
}

/// Which events a source accepts.
#[derive(Debug, Clone)]
pub enum EventFilter {
    /// Only these; a request for another event gets 404.
    Only(HashSet<String>),
    /// Any event whose topic exists.
    Any,
}
