//! A configured webhook sender, in its run-time form: everything the request path needs to decide
//! on a request from that sender, checked once at start.

use std::borrow::Cow;

use actix_web::http::header::HeaderName;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use serde_json::value::RawValue;

use crate::auth::Authenticator;
use crate::client_ip::IpRanges;
use crate::settings::{
    AckMode, AuthSettings, ConfigErrors, RegisterSettings, Settings, SourceSettings, TokenLocation,
};

use crate::identity::Identity;
use crate::json::{self, Pointer};
use crate::names::is_topic_char;
pub use crate::names::{EventFilter, EventType, SourceName, MAX_EVENT_LEN, MAX_TOPIC_LEN};
use crate::schema::Schemas;
use crate::template::Piece;

/// Longest event id accepted from the sender; longer ones are ignored (the relay's own id is used).
pub const MAX_SENDER_ID_LEN: usize = 200;

/// Where a sender puts a value: a request header or a field of the JSON body.
#[derive(Debug, Clone)]
pub enum SenderField {
    Header(HeaderName),
    Body(Pointer),
}

impl SenderField {
    /// Parses `header:NAME` or a JSON pointer.
    pub fn parse(text: &str) -> Result<SenderField, String> {
        match text.strip_prefix("header:") {
            Some(name) => HeaderName::try_from(name)
                .map(SenderField::Header)
                .map_err(|_| format!("{name:?} is not a valid header name")),
            None => Pointer::parse(text)
                .map(SenderField::Body)
                .map_err(|reason| format!("{reason} (or write header:NAME)")),
        }
    }

    /// The value in this request as the record key takes it: a header's bytes as sent, a body
    /// field as text (a string unescaped, another value as written).
    pub fn key_bytes(&self, request: &HttpRequest, document: &RawValue) -> Option<Vec<u8>> {
        match self {
            SenderField::Header(name) => request
                .headers()
                .get(name)
                .map(|value| value.as_bytes().to_vec()),
            SenderField::Body(pointer) => pointer
                .lookup(document)
                .map(|value| json::text(value).into_owned().into_bytes()),
        }
    }

    /// The value in this request, when present, non-empty and text.
    pub fn lookup<'a>(
        &self,
        request: &'a HttpRequest,
        document: &'a RawValue,
    ) -> Option<Cow<'a, str>> {
        let value = match self {
            SenderField::Header(name) => {
                Cow::Borrowed(request.headers().get(name)?.to_str().ok()?.trim())
            }
            SenderField::Body(pointer) => json::text(pointer.lookup(document)?),
        };
        (!value.is_empty()).then_some(value)
    }
}

/// How an event's type is decided.
#[derive(Debug, Clone)]
pub enum EventChoice {
    /// From the path, or the source's default: known before the body is read.
    Decided(EventType),
    /// Named by the sender in a header or the body.
    FromSender,
}

/// A topic name with `{source}` and `{event}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<TopicPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TopicPart {
    Literal(String),
    Source,
    Event,
}

impl TopicTemplate {
    pub fn parse(template: &str) -> Result<TopicTemplate, String> {
        let mut parts = Vec::new();
        for piece in crate::template::pieces(template) {
            parts.push(match piece? {
                Piece::Placeholder("source") => TopicPart::Source,
                Piece::Placeholder("event") => TopicPart::Event,
                Piece::Placeholder(other) => {
                    return Err(format!(
                        "unknown placeholder {{{other}}}: only {{source}} and {{event}} exist"
                    ))
                }
                Piece::Literal(literal) => {
                    if let Some(bad) = literal.chars().find(|&c| !is_topic_char(c)) {
                        return Err(format!(
                            "{bad:?} cannot appear in a Kafka topic name (allowed: A-Z a-z 0-9 . _ -)"
                        ));
                    }
                    TopicPart::Literal(literal.to_owned())
                }
            });
        }
        if parts.is_empty() {
            return Err("the topic template is empty".to_owned());
        }
        Ok(TopicTemplate { parts })
    }

    pub fn uses_event(&self) -> bool {
        self.parts.contains(&TopicPart::Event)
    }

    pub fn render(&self, source: &SourceName, event: &EventType) -> String {
        let mut topic = String::with_capacity(64);
        for part in &self.parts {
            topic.push_str(match part {
                TopicPart::Literal(text) => text,
                TopicPart::Source => source.as_str(),
                TopicPart::Event => event.as_str(),
            });
        }
        topic
    }
}

/// A source's deduplication window (how long each id is kept is its event's [`Identity`] rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupWindow {
    pub max_entries: usize,
}

/// A source's rate limit: sustained requests per second and burst size.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: std::num::NonZeroU32,
    pub burst: std::num::NonZeroU32,
}

/// A configured sender, ready for the request path.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: SourceName,
    /// CloudEvents `source`: `/sources/{name}`.
    pub ce_source: String,
    pub topic: TopicTemplate,
    pub events: EventFilter,
    pub auth: Authenticator,
    /// How an event id is derived when the sender gives none; `None`: a fresh UUIDv7.
    pub identity: Option<Identity>,
    /// Where the record key is (`key`): a header or a body field; `None`: the event id.
    pub key_rule: Option<SenderField>,
    pub ack: AckMode,
    /// Lower-case media types without parameters.
    pub content_types: Vec<String>,
    pub success_status: StatusCode,
    pub max_body_bytes: usize,
    /// Body bytes this source's requests may hold at once.
    pub body_memory_bytes: usize,
    pub dedup: Option<DedupWindow>,
    pub rate_limit: Option<RateLimit>,
    /// Where the sender's event id is, tried in order (`event_id_from`, else the auth preset's).
    pub event_id_from: Vec<SenderField>,
    /// Where the sender's event type is, tried in order (`event_from`, else the auth preset's).
    pub event_from: Vec<SenderField>,
    /// Headers copied into the record, with their record header names (`http_...`).
    pub forward_headers: Vec<(HeaderName, String)>,
    /// Client addresses allowed to post; `None` allows any.
    pub allow_ips: Option<IpRanges>,
    /// JSON Schemas of the source's events, compiled.
    pub schemas: Option<Schemas>,
    /// Path template of example bodies, read by `check-config` only.
    pub samples: Option<String>,
    /// Keep authenticated events the relay refuses on the dead-letter topic.
    pub dead_letter_refused: bool,
    /// The sender's registration API, for `hookrelay register` only.
    pub register: Option<RegisterSettings>,
}

/// The checks of one `[sources.NAME]` table, each a step that records its problems under the
/// table's key path (`sources.NAME.KEY`) and returns what it could build.
struct Check<'a> {
    path: String,
    settings: &'a SourceSettings,
    errors: ConfigErrors,
}

impl<'a> Check<'a> {
    fn new(name: &str, settings: &'a SourceSettings) -> Check<'a> {
        Check {
            path: format!("sources.{name}"),
            settings,
            errors: ConfigErrors::default(),
        }
    }

    /// A problem with `key` of this source (`""`: with the source itself).
    fn push(&mut self, key: &str, reason: impl Into<String>) {
        if key.is_empty() {
            self.errors.push(&self.path, reason);
        } else {
            self.errors.push(format!("{}.{key}", self.path), reason);
        }
    }

    fn events(&mut self) -> EventFilter {
        match &self.settings.events {
            None => EventFilter::Any,
            Some(list) if list.is_empty() => {
                self.push(
                    "events",
                    "an empty list would refuse every event; remove the key to allow any event",
                );
                EventFilter::Any
            }
            Some(list) => {
                for (index, event) in list.iter().enumerate() {
                    if EventType::parse(event).is_none() {
                        self.push(
                            &format!("events[{index}]"),
                            format!("{event:?} is not a valid event type (1 to {MAX_EVENT_LEN} characters of A-Z a-z 0-9 . _ -)"),
                        );
                    }
                }
                EventFilter::Only(list.iter().cloned().collect())
            }
        }
    }

    fn key_rule(&mut self) -> Option<SenderField> {
        let key = self.settings.key.as_deref()?;
        SenderField::parse(key)
            .map_err(|reason| self.push("key", reason))
            .ok()
    }

    fn content_types(&mut self) -> Vec<String> {
        if self.settings.content_types.is_empty() {
            self.push("content_types", "list at least one media type");
        }
        let mut content_types = Vec::new();
        for (index, media_type) in self.settings.content_types.iter().enumerate() {
            let normalized = media_type.trim().to_ascii_lowercase();
            let valid = normalized.split_once('/').is_some_and(|(kind, sub)| {
                !kind.is_empty() && !sub.is_empty() && !normalized.contains([';', ' ', ','])
            });
            if valid {
                content_types.push(normalized);
            } else {
                self.push(
                    &format!("content_types[{index}]"),
                    format!("{media_type:?} is not a media type such as application/json"),
                );
            }
        }
        content_types
    }

    fn success_status(&mut self) -> Option<StatusCode> {
        match self.settings.success_status {
            status @ (200 | 202 | 204) => StatusCode::from_u16(status).ok(),
            other => {
                self.push(
                    "success_status",
                    format!("{other} is not one of 200, 202, 204"),
                );
                None
            }
        }
    }

    fn dedup_window(&mut self, identity: Option<&Identity>) -> Option<DedupWindow> {
        let idempotency = self.settings.idempotency.as_ref()?;
        if idempotency.max_entries == 0 {
            self.push("idempotency.max_entries", "must be at least 1");
        }
        identity
            .is_some_and(Identity::has_window)
            .then_some(DedupWindow {
                max_entries: idempotency.max_entries,
            })
    }

    /// `body_memory_bytes`: room for at least one body of the largest size, within the relay's.
    fn body_memory_bytes(
        &mut self,
        settings: &SourceSettings,
        root: &Settings,
        max_body: usize,
    ) -> usize {
        let relay = root.server.body_memory_bytes;
        let memory = settings.body_memory_bytes.unwrap_or(relay / 2);
        if memory < max_body {
            self.push(
                if settings.body_memory_bytes.is_some() { "body_memory_bytes" } else { "max_body_bytes" },
                format!(
                    "a body of max_body_bytes ({max_body}) must fit the source's body memory ({memory} bytes; by default half of server.body_memory_bytes)"
                ),
            );
        } else if memory > relay {
            self.push(
                "body_memory_bytes",
                format!("must not exceed server.body_memory_bytes ({relay})"),
            );
        }
        memory
    }

    fn rate_limit(&mut self) -> Option<RateLimit> {
        let limit = self.settings.rate_limit.as_ref()?;
        let per_second = std::num::NonZeroU32::new(limit.per_second);
        let burst = std::num::NonZeroU32::new(limit.burst.unwrap_or(limit.per_second));
        if per_second.is_none() {
            self.push("rate_limit.per_second", "must be at least 1");
        }
        if burst.is_none() {
            self.push("rate_limit.burst", "must be at least 1");
        }
        Some(RateLimit {
            per_second: per_second?,
            burst: burst?,
        })
    }

    /// `event_id_from` / `event_from`: the setting, else the auth preset's places.
    fn sender_fields(
        &mut self,
        key: &str,
        setting: &Option<String>,
        preset: &[&str],
    ) -> Vec<SenderField> {
        let texts: Vec<&str> = match setting {
            Some(text) => vec![text.as_str()],
            None => preset.to_vec(),
        };
        texts
            .into_iter()
            .filter_map(|text| {
                SenderField::parse(text)
                    .map_err(|reason| self.push(key, reason))
                    .ok()
            })
            .collect()
    }

    /// A credential must never become data: a record key, an event id (logged with every
    /// request) or an event type.
    fn credentials_never_data(
        &mut self,
        secret_headers: &[HeaderName],
        key_rule: Option<&SenderField>,
        event_id_from: &[SenderField],
        event_from: &[SenderField],
    ) {
        let carries_credentials = |name: &HeaderName| secret_headers.contains(name);
        if let Some(SenderField::Header(name)) = key_rule {
            if carries_credentials(name) {
                self.push(
                    "key",
                    format!(
                        "{:?} carries credentials or a signature and is never a record key",
                        name.as_str()
                    ),
                );
            }
        }
        for (key, fields) in [("event_id_from", event_id_from), ("event_from", event_from)] {
            for field in fields {
                if let SenderField::Header(name) = field {
                    if carries_credentials(name) {
                        self.push(
                            key,
                            format!("{:?} carries credentials or a signature and is never read as event data", name.as_str()),
                        );
                    }
                }
            }
        }
    }

    fn forward_headers(&mut self, secret_headers: &[HeaderName]) -> Vec<(HeaderName, String)> {
        let mut forward_headers = Vec::new();
        for (index, name) in self.settings.forward_headers.iter().enumerate() {
            let key = format!("forward_headers[{index}]");
            match HeaderName::try_from(name.as_str()) {
                Err(_) => self.push(&key, format!("{name:?} is not a valid header name")),
                Ok(header) if secret_headers.contains(&header) => self.push(
                    &key,
                    format!("{name:?} carries credentials or a signature and is never forwarded"),
                ),
                Ok(header) => {
                    let record_name = format!("http_{}", header.as_str());
                    forward_headers.push((header, record_name));
                }
            }
        }
        forward_headers
    }

    fn allow_ips(&mut self) -> Option<IpRanges> {
        let list = self.settings.allow_ips.as_ref()?;
        if list.is_empty() {
            self.push(
                "allow_ips",
                "an empty list would refuse every request; remove the key to allow any address",
            );
        }
        Some(IpRanges::parse(list).unwrap_or_else(|bad| {
            for (index, reason) in bad {
                self.push(&format!("allow_ips[{index}]"), reason);
            }
            IpRanges::default()
        }))
    }

    fn schemas(&mut self, name: Option<&SourceName>, events: &EventFilter) -> Option<Schemas> {
        match (&self.settings.schema, name) {
            (Some(template), Some(name)) => Schemas::load(
                template,
                self.settings.schema_mode.unwrap_or_default(),
                name,
                events,
            )
            .map_err(|reason| self.push("schema", reason))
            .ok(),
            (None, _) if self.settings.schema_mode.is_some() => {
                self.push("schema_mode", "has no effect without a schema");
                None
            }
            _ => None,
        }
    }

    /// Every listed event's topic must be a name Kafka takes.
    fn topic_lengths(
        &mut self,
        topic: Option<&TopicTemplate>,
        name: Option<&SourceName>,
        events: &EventFilter,
    ) {
        let (Some(topic), Some(name), EventFilter::Only(list)) = (topic, name, events) else {
            return;
        };
        for event in list.iter().filter_map(|event| EventType::parse(event)) {
            let rendered = topic.render(name, &event);
            if rendered.len() > MAX_TOPIC_LEN {
                self.push(
                    "topic",
                    format!("topic {rendered:?} is longer than Kafka's {MAX_TOPIC_LEN} characters"),
                );
            }
        }
    }
}

/// Checks `[sources.NAME.register]` at load: the key is a reference, the URL parses.
fn check_register_settings(settings: &RegisterSettings) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if !(settings.api_key.starts_with("env:") || settings.api_key.starts_with("file:")) {
        problems.push((
            "api_key",
            "a secret must be written as env:NAME or file:/path, never as a literal value"
                .to_owned(),
        ));
    }
    match reqwest::Url::parse(&settings.api_url) {
        Ok(url) if matches!(url.scheme(), "https" | "http") => {}
        Ok(url) => problems.push(("api_url", format!("{} is not an HTTP(S) URL", url.scheme()))),
        Err(error) => problems.push(("api_url", format!("not a URL: {error}"))),
    }
    problems
}

/// `[sources.NAME.register]`: a key reference, an HTTP(S) URL, and a token the hook URL can carry.
fn check_register(
    path: &str,
    register: &RegisterSettings,
    auth: &AuthSettings,
    errors: &mut ConfigErrors,
) {
    for (key, reason) in check_register_settings(register) {
        errors.push(format!("{path}.register.{key}"), reason);
    }
    if !matches!(auth, AuthSettings::Token(token) if token.location == TokenLocation::Query) {
        errors.push(
            format!("{path}.register"),
            "register puts the token in the hook URL: auth must be type = \"token\" with in = \"query\"",
        );
    }
}

impl Source {
    /// Checks a `[sources.NAME]` table and builds the source, or returns every problem found,
    /// each under its key path.
    pub fn from_settings(
        name: &str,
        settings: &SourceSettings,
        root: &Settings,
    ) -> Result<Source, ConfigErrors> {
        let mut check = Check::new(name, settings);
        let source_name = SourceName::parse(name)
            .map_err(|reason| check.push("", reason))
            .ok();
        let topic = TopicTemplate::parse(&settings.topic)
            .map_err(|reason| check.push("topic", reason))
            .ok();
        let events = check.events();
        let auth = Authenticator::from_settings(&settings.auth)
            .map_err(|error| check.push(&format!("auth{}", error.key), error.reason))
            .ok();
        let identity = settings.idempotency.as_ref().map(|idempotency| {
            Identity::from_settings(idempotency, &events, &check.path, &mut check.errors)
        });
        let key_rule = check.key_rule();
        let content_types = check.content_types();
        let success_status = check.success_status();
        let max_body_bytes = settings
            .max_body_bytes
            .unwrap_or(root.server.max_body_bytes);
        if max_body_bytes == 0 {
            check.push("max_body_bytes", "must be greater than 0");
        }
        let body_memory_bytes = check.body_memory_bytes(settings, root, max_body_bytes);
        let dedup = check.dedup_window(identity.as_ref());
        let rate_limit = check.rate_limit();
        let preset = auth
            .as_ref()
            .map(Authenticator::sender_fields)
            .unwrap_or_default();
        let event_id_from =
            check.sender_fields("event_id_from", &settings.event_id_from, preset.event_id);
        let event_from = check.sender_fields("event_from", &settings.event_from, preset.event_type);
        let secret_headers = auth
            .as_ref()
            .map(Authenticator::secret_headers)
            .unwrap_or_default();
        check.credentials_never_data(
            &secret_headers,
            key_rule.as_ref(),
            &event_id_from,
            &event_from,
        );
        let forward_headers = check.forward_headers(&secret_headers);
        let allow_ips = check.allow_ips();
        if settings.dead_letter_refused && matches!(auth, Some(Authenticator::None)) {
            check.push(
                "dead_letter_refused",
                "keeps only events whose sender proved who it is: this source has auth type none",
            );
        }
        let schemas = check.schemas(source_name.as_ref(), &events);
        check.topic_lengths(topic.as_ref(), source_name.as_ref(), &events);
        if let Some(register) = &settings.register {
            check_register(&check.path, register, &settings.auth, &mut check.errors);
        }

        match (source_name, topic, auth, success_status) {
            (Some(name), Some(topic), Some(auth), Some(success_status))
                if check.errors.is_empty() =>
            {
                Ok(Source {
                    ce_source: format!("/sources/{name}"),
                    name,
                    topic,
                    events,
                    auth,
                    identity,
                    key_rule,
                    ack: settings.ack.unwrap_or(root.delivery.ack),
                    content_types,
                    success_status,
                    max_body_bytes,
                    body_memory_bytes,
                    dedup,
                    rate_limit,
                    event_id_from,
                    event_from,
                    forward_headers,
                    allow_ips,
                    schemas,
                    samples: settings.samples.clone(),
                    dead_letter_refused: settings.dead_letter_refused,
                    register: settings.register.clone(),
                })
            }
            _ => Err(check.errors),
        }
    }

    /// Every topic this source can publish to, when the configuration fixes them; `None` when the
    /// topic depends on an event type that is not listed.
    pub fn known_topics(&self) -> Option<Vec<String>> {
        if !self.topic.uses_event() {
            let placeholder = EventType::fallback(&self.name);
            return Some(vec![self.topic.render(&self.name, &placeholder)]);
        }
        match &self.events {
            EventFilter::Any => None,
            EventFilter::Only(list) => {
                let mut topics: Vec<String> = list
                    .iter()
                    .filter_map(|event| EventType::parse(event))
                    .map(|event| self.topic.render(&self.name, &event))
                    .collect();
                topics.sort();
                topics.dedup();
                Some(topics)
            }
        }
    }

    /// The event type of a request as far as the head tells: the path segment, else the sender's
    /// (decided once the body is read), else `{source}.webhook`.
    /// `None` means the event is not accepted by this source (404).
    pub fn event_type(&self, segment: Option<&str>) -> Option<EventChoice> {
        let event = match segment {
            Some(segment) => EventType::parse(segment)?,
            None if !self.event_from.is_empty() => return Some(EventChoice::FromSender),
            None => self.default_event_type(),
        };
        self.allows(&event).then_some(EventChoice::Decided(event))
    }

    /// The event type the sender names, sanitised; `{source}.webhook` when it names none.
    /// `Err(None)`: named but unusable (too long); `Err(Some(event))`: not accepted (404).
    pub fn sender_event_type(
        &self,
        request: &HttpRequest,
        document: &RawValue,
    ) -> Result<EventType, Option<EventType>> {
        let event = match self
            .event_from
            .iter()
            .find_map(|field| field.lookup(request, document))
        {
            Some(named) => EventType::sanitize(&named).ok_or(None)?,
            None => self.default_event_type(),
        };
        if self.allows(&event) {
            Ok(event)
        } else {
            Err(Some(event))
        }
    }

    /// The sender's own event id, when it gives a usable one (1 to [`MAX_SENDER_ID_LEN`] visible
    /// ASCII characters).
    pub fn sender_event_id(&self, request: &HttpRequest, document: &RawValue) -> Option<String> {
        self.event_id_from
            .iter()
            .filter_map(|field| field.lookup(request, document))
            .find(|id| id.len() <= MAX_SENDER_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic()))
            .map(Cow::into_owned)
    }

    /// How long a repeat of `event` is answered `"duplicate"`; zero when it never is.
    pub fn dedup_ttl(&self, event: &EventType) -> std::time::Duration {
        match (&self.identity, &self.dedup) {
            (Some(identity), Some(_)) => identity.rule(event.as_str()).ttl,
            _ => std::time::Duration::ZERO,
        }
    }

    /// The event type of a request whose body names none (or cannot be read): the path's, else
    /// `{source}.webhook`.
    pub fn event_type_or_default(&self, choice: &EventChoice) -> EventType {
        match choice {
            EventChoice::Decided(event) => event.clone(),
            EventChoice::FromSender => self.default_event_type(),
        }
    }

    fn default_event_type(&self) -> EventType {
        EventType::fallback(&self.name)
    }

    fn allows(&self, event: &EventType) -> bool {
        match &self.events {
            EventFilter::Only(list) => list.contains(event.as_str()),
            EventFilter::Any => true,
        }
    }

    /// Whether `content_type` (a full header value) names an accepted media type, in UTF-8 if it
    /// names a charset at all (JSON is UTF-8, RFC 8259: a body declared in another charset is
    /// refused rather than published with a `content-type` that misdescribes its bytes).
    pub fn accepts_content_type(&self, content_type: &str) -> bool {
        let mut parts = content_type.split(';');
        let media_type = parts.next().unwrap_or("").trim();
        let utf8 = parts.all(|parameter| match parameter.split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
                let value = value.trim().trim_matches('"');
                // ASCII is UTF-8 too.
                ["utf-8", "utf8", "us-ascii"]
                    .iter()
                    .any(|charset| value.eq_ignore_ascii_case(charset))
            }
            _ => true,
        });
        utf8 && self
            .content_types
            .iter()
            .any(|accepted| accepted.eq_ignore_ascii_case(media_type))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_need_a_secret_reference_and_an_http_url() {
        let good = RegisterSettings {
            api_key: "env:TAGMANGO_API_KEY".to_owned(),
            api_url: crate::settings::TAGMANGO_REGISTER_API_URL.to_owned(),
        };
        assert!(check_register_settings(&good).is_empty());
        let bad = RegisterSettings {
            api_key: "literal-key".to_owned(),
            api_url: "ftp://x".to_owned(),
        };
        let problems: Vec<&str> = check_register_settings(&bad)
            .iter()
            .map(|(key, _)| *key)
            .collect();
        assert_eq!(problems, ["api_key", "api_url"]);
    }

    use super::*;

    fn name(text: &str) -> SourceName {
        SourceName::parse(text).unwrap()
    }

    #[test]
    fn topic_template_substitutes_source_and_event() {
        let template = TopicTemplate::parse("webhooks.{source}.{event}").unwrap();
        let event = EventType::parse("course.completed.50").unwrap();
        assert_eq!(
            template.render(&name("tagmango"), &event),
            "webhooks.tagmango.course.completed.50"
        );
        assert!(template.uses_event());
    }

    #[test]
    fn topic_template_rejects_unknown_placeholders_and_bad_characters() {
        let error = TopicTemplate::parse("webhooks.{tenant}").unwrap_err();
        assert!(error.contains("unknown placeholder {tenant}"), "{error}");
        let error = TopicTemplate::parse("webhooks/{source}").unwrap_err();
        assert!(error.contains("'/'"), "{error}");
        assert!(TopicTemplate::parse("webhooks.{source").is_err());
        assert!(TopicTemplate::parse("").is_err());
    }

    #[test]
    fn sender_event_types_are_sanitised_to_topic_characters() {
        let sanitize = |text| EventType::sanitize(text).map(|event| event.as_str().to_owned());
        assert_eq!(sanitize("orders/create").as_deref(), Some("orders.create"));
        assert_eq!(sanitize("push").as_deref(), Some("push"));
        assert_eq!(sanitize("a b\u{e9}!").as_deref(), Some("a_b__"));
        assert_eq!(sanitize(&"x".repeat(MAX_EVENT_LEN + 1)), None);
    }

    #[test]
    fn event_types_are_limited_to_topic_characters() {
        assert!(EventType::parse("course.completed.50").is_some());
        assert!(EventType::parse("a/b").is_none());
        assert!(EventType::parse("").is_none());
        assert!(EventType::parse(&"x".repeat(MAX_EVENT_LEN + 1)).is_none());
    }
}
