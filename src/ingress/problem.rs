//! Every way a webhook request can be refused, and its RFC 9457 problem-details answer.
//!
//! This is the one place where refusals become HTTP: status, stable snake_case `code`, a `detail`
//! that helps the sender fix the request (never a secret or an internal error text),
//! `Retry-After` on 503, `Allow` on 405.

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

use crate::auth::AuthError;
use crate::json::JsonError;
use crate::schema::Violation;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("no such endpoint")]
    NotFound,
    #[error("unknown source")]
    UnknownSource,
    #[error("event not accepted by this source")]
    UnknownEvent,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Unauthorized(AuthError),
    #[error("client address not allowed")]
    ForbiddenIp,
    #[error("unsupported content type")]
    UnsupportedMediaType { accepted: String },
    #[error("body too large")]
    PayloadTooLarge { limit: usize },
    #[error("record too large for Kafka")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("body not complete in time")]
    BodyTimeout { timeout: Duration },
    #[error("body ended early")]
    IncompleteBody,
    #[error(transparent)]
    InvalidJson(JsonError),
    #[error("event type unusable")]
    InvalidEventType,
    #[error("body fails the JSON Schema at {0}")]
    SchemaViolation(Violation),
    #[error("relay not ready")]
    NotReady { retry_after: u64 },
    #[error("producer queue full")]
    QueueFull { retry_after: u64 },
    #[error("Kafka unavailable")]
    KafkaUnavailable { retry_after: u64 },
    #[error("rate limited")]
    RateLimited { retry_after: u64 },
    #[error("spool full")]
    SpoolFull { retry_after: u64 },
    #[error("spool unavailable")]
    SpoolUnavailable { retry_after: u64 },
    #[error("body memory full")]
    BodyMemoryFull { retry_after: u64 },
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'static str,
    detail: String,
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NotFound | Rejection::UnknownSource | Rejection::UnknownEvent => {
                StatusCode::NOT_FOUND
            }
            Rejection::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::ForbiddenIp => StatusCode::FORBIDDEN,
            Rejection::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::PayloadTooLarge { .. } | Rejection::RecordTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Rejection::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Rejection::IncompleteBody | Rejection::InvalidJson(_) | Rejection::InvalidEventType => {
                StatusCode::BAD_REQUEST
            }
            Rejection::SchemaViolation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Rejection::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Rejection::NotReady { .. }
            | Rejection::QueueFull { .. }
            | Rejection::KafkaUnavailable { .. }
            | Rejection::SpoolFull { .. }
            | Rejection::SpoolUnavailable { .. }
            | Rejection::BodyMemoryFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable machine-readable code; also the `reason` label of the rejection metric.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NotFound => "not_found",
            Rejection::UnknownSource => "unknown_source",
            Rejection::UnknownEvent => "unknown_event",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::Unauthorized(AuthError::MissingCredentials) => "missing_credentials",
            Rejection::Unauthorized(AuthError::InvalidCredentials) => "invalid_credentials",
            Rejection::Unauthorized(AuthError::MissingSignature) => "missing_signature",
            Rejection::Unauthorized(AuthError::InvalidSignature) => "invalid_signature",
            Rejection::Unauthorized(AuthError::StaleTimestamp) => "stale_timestamp",
            Rejection::ForbiddenIp => "forbidden_ip",
            Rejection::UnsupportedMediaType { .. } => "unsupported_media_type",
            Rejection::PayloadTooLarge { .. } | Rejection::RecordTooLarge { .. } => {
                "payload_too_large"
            }
            Rejection::BodyTimeout { .. } => "body_timeout",
            Rejection::IncompleteBody => "incomplete_body",
            Rejection::InvalidJson(JsonError::Empty) => "empty_body",
            Rejection::InvalidJson(_) => "invalid_json",
            Rejection::InvalidEventType => "invalid_event_type",
            Rejection::SchemaViolation(_) => "schema_violation",
            Rejection::NotReady { .. } => "not_ready",
            Rejection::QueueFull { .. } => "queue_full",
            Rejection::KafkaUnavailable { .. } => "kafka_unavailable",
            Rejection::RateLimited { .. } => "rate_limited",
            Rejection::SpoolFull { .. } => "spool_full",
            Rejection::SpoolUnavailable { .. } => "spool_unavailable",
            Rejection::BodyMemoryFull { .. } => "body_memory_full",
        }
    }

    fn detail(&self) -> String {
        match self {
            Rejection::NotFound => {
                "webhooks are posted to /hooks/{source} or /hooks/{source}/{event}".to_owned()
            }
            Rejection::UnknownSource => "no source of this name is configured".to_owned(),
            Rejection::UnknownEvent => "this source does not accept this event type".to_owned(),
            Rejection::MethodNotAllowed => "webhooks must be sent with POST".to_owned(),
            Rejection::Unauthorized(error) => error.to_string(),
            Rejection::ForbiddenIp => {
                "this source does not accept requests from the client's address".to_owned()
            }
            Rejection::UnsupportedMediaType { accepted } => {
                format!("the Content-Type must be one of: {accepted} (in UTF-8 when it names a charset)")
            }
            Rejection::PayloadTooLarge { limit } => {
                format!("the body is larger than this source's limit of {limit} bytes")
            }
            Rejection::RecordTooLarge { size, limit } => format!(
                "the event with its key and headers makes a Kafka record of {size} bytes; records may hold at most {limit} bytes"
            ),
            Rejection::BodyTimeout { timeout } => format!(
                "the body was not received completely within {} ms",
                timeout.as_millis()
            ),
            Rejection::IncompleteBody => {
                "the connection ended before the body was complete".to_owned()
            }
            Rejection::InvalidJson(error) => error.to_string(),
            Rejection::InvalidEventType => format!(
                "the event type named by the sender is longer than {} characters",
                crate::source::MAX_EVENT_LEN
            ),
            Rejection::SchemaViolation(violation) => {
                format!("the body does not match this event's JSON Schema at {violation}")
            }
            Rejection::NotReady { .. } => {
                "the relay cannot reach its durability point right now; retry later".to_owned()
            }
            Rejection::QueueFull { .. } => {
                "the relay's Kafka queue is full; retry later".to_owned()
            }
            Rejection::KafkaUnavailable { .. } => {
                "Kafka did not acknowledge the event in time; retry later".to_owned()
            }
            Rejection::RateLimited { .. } => {
                "this source sends faster than its rate limit; retry after the given delay"
                    .to_owned()
            }
            Rejection::SpoolFull { .. } => {
                "the relay's spool is full while Kafka catches up; retry later".to_owned()
            }
            Rejection::SpoolUnavailable { .. } => {
                "the relay cannot store the event durably right now; retry later".to_owned()
            }
            Rejection::BodyMemoryFull { .. } => {
                "the relay holds as many request bodies for this source as it may; retry later"
                    .to_owned()
            }
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Rejection::NotReady { retry_after }
            | Rejection::QueueFull { retry_after }
            | Rejection::KafkaUnavailable { retry_after }
            | Rejection::RateLimited { retry_after }
            | Rejection::SpoolFull { retry_after }
            | Rejection::SpoolUnavailable { retry_after }
            | Rejection::BodyMemoryFull { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether the request body may still be (partly) unread, so the connection cannot be reused.
    pub fn leaves_body_unread(&self) -> bool {
        !matches!(
            self,
            Rejection::InvalidJson(_)
                | Rejection::RecordTooLarge { .. }
                | Rejection::InvalidEventType
                | Rejection::SchemaViolation(_)
                | Rejection::NotReady { .. }
                | Rejection::QueueFull { .. }
                | Rejection::KafkaUnavailable { .. }
                | Rejection::SpoolFull { .. }
                | Rejection::SpoolUnavailable { .. }
        )
    }

    pub fn response(&self) -> HttpResponse {
        let status = self.status();
        let code = self.code();
        let problem = Problem {
            kind: format!("urn:hookrelay:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            code,
            detail: self.detail(),
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE));
        if let Some(seconds) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        if matches!(self, Rejection::MethodNotAllowed) {
            response.insert_header((header::ALLOW, "POST"));
        }
        if self.leaves_body_unread() {
            response.force_close();
        }
        response.body(serde_json::to_vec(&problem).unwrap_or_default())
    }
}
