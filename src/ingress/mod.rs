//! The webhook listener: `POST /hooks/{source}` and `POST /hooks/{source}/{event}`.
//!
//! A request goes through named steps, each of which can refuse it with a [`Rejection`]:
//! find the source → check the client's address → find the event → check credentials → check the
//! content type and declared length → read the body (limit, deadline) → verify the signature over
//! the raw bytes → rate limit (only authenticated requests count) → validate the JSON (and its
//! schema) → answer a sender's handshake (Slack's `url_verification`) → derive the event's
//! identity → skip a duplicate → reach the durability point of the source's ack mode. Only then
//! is it answered 2xx.
//! Every request ends in [`report`], which writes its one log line and moves its metrics.

mod body;
mod problem;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::ConnectionType;
use actix_web::http::{Method, StatusCode};
use actix_web::web::{self, Bytes, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use tracing::Instrument;

pub use problem::{Rejection, PROBLEM_CONTENT_TYPE};

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::auth::{Head, Unverified};
use crate::client_ip::{self, IpRanges};
use crate::config::{AckMode, Config};
use crate::delivery::{Delivery, Unavailable};
use crate::event::Event;
use crate::events::{DeadLetterPlace, DeadLettered};
use crate::health::Health;
use crate::idempotency::Idempotency;
use crate::json;
use crate::metrics::{Metrics, SourceMetrics, UNKNOWN_SOURCE};
use crate::publisher::{Ack, Publisher};
use crate::record::{self, CloudEvent, Outgoing};
use crate::retry::MIN_RETRY_AFTER;
use crate::schema::{SchemaMode, Violation};
use crate::source::{EventChoice, EventFilter, EventType, Source};
use crate::spool::Spool;
use crate::topics::Topics;

/// Header carrying the request id, accepted from the sender when sane and always echoed.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A source with its metric series and rate limiter.
pub struct SourceEntry {
    pub source: Source,
    pub metrics: Arc<SourceMetrics>,
    limiter: Option<DefaultDirectRateLimiter>,
    /// The body bytes this source's requests hold.
    body_memory: body::BodyBudget,
}

/// A reload that needs the spool this process did not open.
#[derive(Debug, thiserror::Error)]
#[error("source {name} acks on the spool, which this process has not opened: restart to enable it")]
pub struct SpoolNotOpen {
    pub name: String,
}

/// What the ingress handlers share.
pub struct Ingress {
    /// Replaced whole by a configuration reload; a request keeps the version it started with.
    live: ArcSwap<Live>,
    /// The body bytes all requests hold (kept across reloads: the bound on the relay's memory).
    body_memory: body::BodyBudget,
    publisher: Arc<Publisher>,
    topics: Arc<Topics>,
    health: Arc<Health>,
    metrics: Metrics,
    delivery: Delivery,
    idempotency: Arc<Idempotency>,
}

/// The part of the ingress that a configuration reload replaces.
pub struct Live {
    sources: HashMap<String, SourceEntry>,
    body_timeout: Duration,
    broker_timeout: Duration,
    max_json_depth: usize,
    /// The largest Kafka record the producer takes: a larger one is refused before it is durable.
    max_record_bytes: usize,
    /// `delivery.dead_letter_topic`.
    dead_letter_topic: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    trusted_proxies: IpRanges,
    /// Partitions, replication and timeout for topics created on first use, when allowed.
    create_topics: Option<(i32, i32, Duration)>,
}

impl Ingress {
    pub fn new(
        config: &Config,
        publisher: Arc<Publisher>,
        topics: Arc<Topics>,
        health: Arc<Health>,
        metrics: Metrics,
        spool: Option<Spool>,
        idempotency: Arc<Idempotency>,
    ) -> Ingress {
        Ingress {
            live: ArcSwap::from_pointee(Live::new(config, &metrics)),
            body_memory: body::BodyBudget::new(config.server.body_memory_bytes),
            delivery: Delivery::new(publisher.clone(), spool, idempotency.clone()),
            publisher,
            topics,
            health,
            metrics,
            idempotency,
        }
    }

    /// Switches to a new configuration's sources, secrets and limits without dropping a request.
    /// Refuses (keeping the current one) when the new configuration needs what only a restart
    /// gives: a spool that is not open.
    pub fn reload(&self, config: &Config) -> Result<(), SpoolNotOpen> {
        if !self.delivery.has_spool() {
            if let Some(source) = config.sources.iter().find(|s| s.ack == AckMode::Spool) {
                return Err(SpoolNotOpen {
                    name: source.name.to_string(),
                });
            }
        }
        self.live.store(Arc::new(Live::new(config, &self.metrics)));
        Ok(())
    }
}

impl Live {
    fn new(config: &Config, metrics: &Metrics) -> Live {
        let sources = config
            .sources
            .iter()
            .map(|source| {
                let entry = SourceEntry {
                    metrics: metrics.source(source.name.as_str()),
                    limiter: source.rate_limit.map(|limit| {
                        RateLimiter::direct(
                            Quota::per_second(limit.per_second).allow_burst(limit.burst),
                        )
                    }),
                    body_memory: body::BodyBudget::new(source.body_memory_bytes),
                    source: source.clone(),
                };
                (source.name.as_str().to_owned(), entry)
            })
            .collect();
        Live {
            sources,
            body_timeout: config.server.body_timeout_ms,
            max_json_depth: config.server.max_json_depth,
            max_record_bytes: config.max_record_bytes(),
            dead_letter_topic: config.delivery.dead_letter_topic.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            broker_timeout: config.delivery.broker_timeout_ms,
            create_topics: config.kafka.create_topics.then_some((
                config.kafka.topic_partitions,
                config.kafka.topic_replication,
                config.kafka.metadata_timeout_ms,
            )),
        }
    }
}

/// Registers the ingress routes on an actix-web app.
///
/// The two hook paths are matched by [`HookPath::parse`] rather than by actix-web's router, whose
/// dynamic segments cost a regular-expression search per request (docs/benchmarks.md, *Measurements
/// behind the code's shape*).
pub fn routes(config: &mut web::ServiceConfig) {
    config.default_service(web::to(dispatch));
}

/// Counts a request in `hookrelay_http_requests_in_flight` until dropped.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a prometheus::IntGauge) -> InFlight<'a> {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `/hooks/{source}` or `/hooks/{source}/{event}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookPath<'a> {
    pub source: &'a str,
    pub event: Option<&'a str>,
}

impl<'a> HookPath<'a> {
    pub fn parse(path: &'a str) -> Option<HookPath<'a>> {
        let rest = path.strip_prefix("/hooks/")?;
        let (source, event) = match rest.split_once('/') {
            Some((source, event)) => (source, Some(event)),
            None => (rest, None),
        };
        let bad_event = event.is_some_and(|event| event.is_empty() || event.contains('/'));
        (!source.is_empty() && !bad_event).then_some(HookPath { source, event })
    }
}

async fn dispatch(
    request: HttpRequest,
    mut payload: Payload,
    ingress: web::Data<Ingress>,
) -> HttpResponse {
    let started = Instant::now();
    let _in_flight = InFlight::enter(&ingress.metrics.in_flight);
    let request_id = request_id(request.headers());
    // Every line logged while handling the request carries its id.
    let span = tracing::info_span!("request", request_id = request_id.as_str());
    let mut response = handle(&request, &mut payload, &ingress, &request_id, started)
        .instrument(span)
        .await;
    if response.head().connection_type() == ConnectionType::Close {
        // A refusal that leaves the body unread closes the connection. But actix-http drains a
        // chunked body whose reader is gone and keeps the connection alive, for as long as the
        // client trickles chunks; with the reader held until the refusal is written, it closes
        // the connection instead.
        response = hold_reader_until_written(response, payload);
    }
    response
}

/// Attaches the reader of a request body that a refusal leaves unread to the refusal's body, so
/// that actix-http closes the connection once the refusal is written rather than draining the
/// body (see [`dispatch`]; also used for refusals of `Expect: 100-continue` requests).
pub fn hold_reader_until_written(response: HttpResponse, reader: impl Any) -> HttpResponse {
    response.map_body(|_, body| match body.try_into_bytes() {
        Ok(bytes) => BoxBody::new(UnreadBody {
            bytes: Some(bytes),
            _reader: Box::new(reader),
        }),
        Err(body) => body,
    })
}

/// The body of a refusal, holding the reader of the request body it left unread until it is
/// written (see [`dispatch`]).
struct UnreadBody {
    bytes: Option<Bytes>,
    _reader: Box<dyn Any>,
}

impl MessageBody for UnreadBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.bytes.as_ref().map_or(0, |bytes| bytes.len() as u64))
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        std::task::Poll::Ready(self.get_mut().bytes.take().map(Ok))
    }
}

async fn handle(
    request: &HttpRequest,
    payload: &mut Payload,
    ingress: &Ingress,
    request_id: &str,
    started: Instant,
) -> HttpResponse {
    let path = request.path();
    let report = |entry, outcome| report(ingress, path, request_id, started, entry, outcome);
    let live = ingress.live.load();
    let admitted = match admit(
        &live,
        request.method(),
        path,
        request.into(),
        request.peer_addr(),
    ) {
        Ok(admitted) => admitted,
        Err((entry, rejection)) => return report(entry, Err(rejection)),
    };
    let received = SystemTime::now();
    let entry = admitted.entry;
    let outcome = accept(request, admitted, payload, ingress, &live, received).await;
    report(Some(entry), outcome)
}

/// What the request head alone allowed.
struct Admitted<'a> {
    entry: &'a SourceEntry,
    event: EventChoice,
    content_type: &'a str,
    declared_length: Option<usize>,
}

/// The checks that need only the request head, in order: a hook path, `POST`, a known source,
/// an allowed client address, an accepted event, credentials, content type, declared length.
/// Run by the handler, and before "100 Continue" for `Expect: 100-continue` ([`expect`]). A
/// refusal carries the source's entry when the source is known (for its metrics).
fn admit<'a>(
    live: &'a Live,
    method: &Method,
    path: &'a str,
    head: Head<'a>,
    peer: Option<std::net::SocketAddr>,
) -> Result<Admitted<'a>, (Option<&'a SourceEntry>, Rejection)> {
    let Some(hook) = HookPath::parse(path) else {
        return Err((None, Rejection::NotFound));
    };
    let entry = live.sources.get(hook.source);
    if method != Method::POST {
        return Err((entry, Rejection::MethodNotAllowed));
    }
    let Some(entry) = entry else {
        return Err((None, Rejection::UnknownSource));
    };
    let refuse = |rejection| (Some(entry), rejection);
    let source = &entry.source;
    if let Some(allowed) = &source.allow_ips {
        let client = client_ip::client_ip(peer, head.headers, &live.trusted_proxies);
        if !client.is_some_and(|address| allowed.contains(address)) {
            return Err(refuse(Rejection::ForbiddenIp));
        }
    }
    let event = source
        .event_type(hook.event)
        .ok_or_else(|| refuse(Rejection::UnknownEvent))?;
    source
        .auth
        .check_head(head)
        .map_err(|error| refuse(Rejection::Unauthorized(error)))?;
    let content_type = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .filter(|value| source.accepts_content_type(value))
        .ok_or_else(|| {
            refuse(Rejection::UnsupportedMediaType {
                accepted: source.content_types.join(", "),
            })
        })?;
    let limit = source.max_body_bytes;
    let declared_length = body::declared_length(head.headers);
    if declared_length.is_some_and(|length| length > limit) {
        return Err(refuse(Rejection::PayloadTooLarge { limit }));
    }
    Ok(Admitted {
        entry,
        event,
        content_type,
        declared_length,
    })
}

/// `Expect: 100-continue`: the head checks run before the relay answers "100 Continue", so that
/// a request it will refuse gets its final status at once and its client never sends the body
/// (RFC 9110 §10.1.1). `None`: continue; else the refusal, already counted and logged.
pub fn expect(
    ingress: &Ingress,
    request: &actix_web::dev::RequestHead,
    peer: Option<std::net::SocketAddr>,
) -> Option<HttpResponse> {
    let started = Instant::now();
    let live = ingress.live.load();
    let head = Head {
        headers: &request.headers,
        query: request.uri.query().unwrap_or(""),
    };
    let path = request.uri.path();
    let (entry, rejection) = admit(&live, &request.method, path, head, peer).err()?;
    let request_id = request_id(&request.headers);
    Some(report(
        ingress,
        path,
        &request_id,
        started,
        entry,
        Err(rejection),
    ))
}

/// The answer to an accepted event.
#[derive(Serialize)]
struct Accepted<'a> {
    id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i64>,
}

/// How a request that was not refused is answered.
enum Answer {
    /// An event that reached its durability point (or was a duplicate).
    Delivered(Delivered),
    /// A sender's handshake (Slack's `url_verification`): its challenge echoed, nothing published.
    Challenge(String),
}

/// What the log line says about an accepted event.
struct Delivered {
    event: Event,
    topic: String,
    ack: Option<Ack>,
    /// Seen within the idempotency window: answered, not published.
    duplicate: bool,
    bytes: usize,
    /// The source's success status.
    status: StatusCode,
    /// Where the body failed its schema, in `observe` mode.
    schema_violation: Option<Violation>,
}

/// The steps after the head checks ([`admit`]): body, signature, rate, JSON, handshake, event
/// type, schema, identity, duplicate, durability point.
async fn accept(
    request: &HttpRequest,
    admitted: Admitted<'_>,
    payload: &mut Payload,
    ingress: &Ingress,
    live: &Live,
    received: SystemTime,
) -> Result<Answer, Rejection> {
    let Admitted {
        entry,
        event: choice,
        content_type,
        declared_length,
    } = admitted;
    let source = &entry.source;
    let mut held = body::Held::new(&entry.body_memory, &ingress.body_memory);
    let body = read_body(payload, entry, live, declared_length, &mut held).await?;
    let body = source
        .auth
        .verify(request, Unverified::new(body), received)
        .map_err(Rejection::Unauthorized)?;
    rate_limit(entry)?;
    let authentic = Authentic {
        ingress,
        live,
        entry,
        request,
        body: body.bytes(),
        received,
    };
    let document = authentic.parse(&choice).await?;
    if let Some(challenge) = source.auth.handshake(document) {
        return Ok(Answer::Challenge(challenge));
    }
    let event_type = match choice {
        EventChoice::Decided(event) => event,
        EventChoice::FromSender => {
            source
                .sender_event_type(request, document)
                .map_err(|refused| match refused {
                    Some(_) => Rejection::UnknownEvent,
                    None => Rejection::InvalidEventType,
                })?
        }
    };
    let schema_violation = authentic.check_schema(&event_type).await?;
    let event = Event::new(
        source,
        event_type,
        request,
        body.bytes(),
        document,
        received,
    );
    let topic = source.topic.render(&source.name, &event.event_type);
    if matches!(source.events, EventFilter::Any) {
        ensure_topic(ingress, live, &topic).await?;
    }
    let duplicate = ingress
        .idempotency
        .is_duplicate(source.name.as_str(), &event.id);
    let ack = if duplicate {
        None
    } else {
        deliver(&authentic, &event, &topic, content_type).await?
    };
    Ok(Answer::Delivered(Delivered {
        event,
        topic,
        ack,
        duplicate,
        bytes: body.bytes().len(),
        status: source.success_status,
        schema_violation,
    }))
}

/// Reads the body within the source's limit, the body deadline and the body memory (`held`
/// keeps its bytes until the request is answered).
async fn read_body(
    payload: &mut Payload,
    entry: &SourceEntry,
    live: &Live,
    declared_length: Option<usize>,
    held: &mut body::Held<'_>,
) -> Result<Bytes, Rejection> {
    let deadline = tokio::time::Instant::now() + live.body_timeout;
    let limit = entry.source.max_body_bytes;
    let body = body::read(payload, limit, declared_length, deadline, held)
        .await
        .map_err(|error| match error {
            body::BodyError::NoRoom => Rejection::BodyMemoryFull {
                retry_after: MIN_RETRY_AFTER,
            },
            body::BodyError::TooLarge => Rejection::PayloadTooLarge { limit },
            body::BodyError::TimedOut => Rejection::BodyTimeout {
                timeout: live.body_timeout,
            },
            body::BodyError::Incomplete => Rejection::IncompleteBody,
        })?;
    entry.metrics.body_bytes.observe(body.len() as f64);
    Ok(body)
}

/// Only requests that proved their sender use up the source's rate: strangers cannot drain it
/// and have the real sender refused.
fn rate_limit(entry: &SourceEntry) -> Result<(), Rejection> {
    let Some(limiter) = &entry.limiter else {
        return Ok(());
    };
    limiter.check().map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        Rejection::RateLimited {
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    })
}

/// An authenticated request on its way: what refusing it, or delivering it, needs.
struct Authentic<'a> {
    ingress: &'a Ingress,
    live: &'a Live,
    entry: &'a SourceEntry,
    request: &'a HttpRequest,
    body: &'a [u8],
    received: SystemTime,
}

impl<'a> Authentic<'a> {
    /// The body as a JSON document within the depth limit.
    async fn parse(
        &self,
        choice: &EventChoice,
    ) -> Result<&'a serde_json::value::RawValue, Rejection> {
        let checked = json::validate(self.body).and_then(|document| {
            json::check_depth(self.body, self.live.max_json_depth).map(|()| document)
        });
        match checked {
            Ok(document) => Ok(document),
            Err(error) => {
                let intended = self.entry.source.event_type_or_default(choice);
                Err(self.keep(Rejection::InvalidJson(error), intended).await)
            }
        }
    }

    /// The event's JSON Schema, if it has one: a violation refuses it in `enforce` mode and is
    /// returned (to be logged) in `observe` mode.
    async fn check_schema(&self, event_type: &EventType) -> Result<Option<Violation>, Rejection> {
        let Some(schemas) = &self.entry.source.schemas else {
            return Ok(None);
        };
        match schemas
            .check(event_type, self.body)
            .map_err(Rejection::InvalidJson)?
        {
            Some(violation) if schemas.mode == SchemaMode::Enforce => Err(self
                .keep(Rejection::SchemaViolation(violation), event_type.clone())
                .await),
            observed => Ok(observed),
        }
    }

    /// For a source with `dead_letter_refused`: keeps an event its sender authenticated but the
    /// relay refuses (its body is not JSON, or fails its schema) on the dead-letter topic,
    /// through the source's ack mode, and returns the refusal to answer. When it cannot be kept
    /// now, the answer is that 503 instead, so that a sender that retries sends it again.
    async fn keep(&self, rejection: Rejection, intended_event: EventType) -> Rejection {
        let source = &self.entry.source;
        let Some(dead_letter_topic) = self.live.dead_letter_topic.as_deref() else {
            return rejection;
        };
        if !source.dead_letter_refused {
            return rejection;
        }
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        let time = humantime::format_rfc3339_millis(self.received).to_string();
        let intended_topic = source.topic.render(&source.name, &intended_event);
        let reason = rejection.code();
        let mut headers = CloudEvent {
            id: &id,
            source: &source.ce_source,
            event_type: intended_event.as_str(),
            time: &time,
            content_type: self
                .request
                .headers()
                .get(header::CONTENT_TYPE)
                .map_or(&b""[..], |value| value.as_bytes()),
            auth: source.auth.method(),
        }
        .headers();
        record::mark_dead(&mut headers, reason, &intended_topic);
        let outgoing = Outgoing {
            topic: dead_letter_topic,
            key: id.as_bytes(),
            headers: &headers,
            value: self.body,
            received: self.received,
        };
        if outgoing.wire_size() > self.live.max_record_bytes {
            return rejection;
        }
        match self.commit(&outgoing, None).await {
            Ok(_) => {
                DeadLettered {
                    seq: None,
                    id: Some(&id),
                    source: source.name.as_str(),
                    reason,
                    place: DeadLetterPlace::RefusedKept,
                }
                .emit(&self.ingress.metrics.dead_letters, None);
                rejection
            }
            Err(unavailable) => unavailable,
        }
    }

    /// [`Delivery::commit`] with the source's ack mode, its failures as refusals.
    async fn commit(
        &self,
        outgoing: &Outgoing<'_>,
        remembered: Option<crate::idempotency::Remembered>,
    ) -> Result<Option<Ack>, Rejection> {
        let source = &self.entry.source;
        self.ingress
            .delivery
            .commit(
                source.ack,
                source.name.as_str(),
                &self.entry.metrics,
                outgoing,
                remembered,
                self.live.broker_timeout,
            )
            .await
            .map_err(|unavailable| match unavailable {
                Unavailable::NoSpool => Rejection::NotReady {
                    retry_after: MIN_RETRY_AFTER,
                },
                Unavailable::SpoolFull { retry_after } => Rejection::SpoolFull { retry_after },
                Unavailable::SpoolFailed => Rejection::SpoolUnavailable {
                    retry_after: MIN_RETRY_AFTER,
                },
                Unavailable::QueueFull { retry_after } => Rejection::QueueFull { retry_after },
                Unavailable::Kafka { retry_after } => Rejection::KafkaUnavailable { retry_after },
            })
    }
}

/// Builds the event's record, checks that Kafka can take it, and takes it to the source's
/// durability point.
async fn deliver(
    authentic: &Authentic<'_>,
    event: &Event,
    topic: &str,
    content_type: &str,
) -> Result<Option<Ack>, Rejection> {
    let Authentic {
        ingress,
        live,
        entry,
        request,
        body,
        received,
    } = authentic;
    let source = &entry.source;
    if !ingress.health.is_ready() {
        return Err(Rejection::NotReady {
            retry_after: ingress.publisher.retry_after_secs(),
        });
    }
    let time = event.time();
    let mut headers = CloudEvent {
        id: &event.id,
        source: &source.ce_source,
        event_type: event.event_type.as_str(),
        time: &time,
        content_type: content_type.as_bytes(),
        auth: source.auth.method(),
    }
    .headers();
    record::forward(&mut headers, &source.forward_headers, request.headers());
    let outgoing = Outgoing {
        topic,
        key: &event.key,
        headers: &headers,
        value: body,
        received: *received,
    };
    let size = outgoing.wire_size();
    let limit = ingress
        .topics
        .record_limit(topic)
        .map_or(live.max_record_bytes, |topic_limit| {
            topic_limit.min(live.max_record_bytes)
        });
    if size > limit {
        return Err(Rejection::RecordTooLarge { size, limit });
    }
    let remembered = ingress.idempotency.entry(
        source.name.as_str(),
        &event.id,
        source.dedup_ttl(&event.event_type),
    );
    authentic.commit(&outgoing, remembered).await
}

/// For sources that accept any event: the event's topic must exist (or be created, when the
/// configuration allows), or the event would wait in the producer queue and then be lost.
async fn ensure_topic(ingress: &Ingress, live: &Live, topic: &str) -> Result<(), Rejection> {
    if ingress.topics.exists(topic) {
        return Ok(());
    }
    let Some((partitions, replication, timeout)) = live.create_topics else {
        return Err(Rejection::UnknownEvent);
    };
    let names = [topic.to_owned()];
    match ingress
        .publisher
        .create_topics(&names, partitions, replication, timeout)
        .await
    {
        Ok(()) => {
            tracing::info!(topic, "created topic for a new event type");
            ingress.topics.insert(topic.to_owned());
            Ok(())
        }
        Err(error) => {
            tracing::warn!(topic, reason = %error, "could not create topic for a new event type");
            Err(Rejection::KafkaUnavailable {
                retry_after: ingress.publisher.retry_after_secs(),
            })
        }
    }
}

/// Answers the request, writes its log line and moves its metrics: the one place per request.
fn report(
    ingress: &Ingress,
    path: &str,
    request_id: &str,
    started: Instant,
    entry: Option<&SourceEntry>,
    outcome: Result<Answer, Rejection>,
) -> HttpResponse {
    let source_label = entry.map_or(UNKNOWN_SOURCE, |entry| entry.source.name.as_str());
    count_outcome(ingress, entry, source_label, &outcome);
    let mut response = match &outcome {
        Ok(Answer::Challenge(challenge)) => HttpResponse::Ok()
            .content_type("application/json")
            .body(serde_json::json!({ "challenge": challenge }).to_string()),
        Ok(Answer::Delivered(delivered)) => accepted_response(delivered),
        Err(rejection) => rejection.response(),
    };
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    ingress.metrics.request(source_label, status);
    if let Some(entry) = entry {
        entry
            .metrics
            .request_duration
            .observe(elapsed.as_secs_f64());
    }
    let line = LogLine {
        request_id,
        source: source_label,
        entry,
        path,
        status,
        latency_ms: elapsed.as_secs_f64() * 1000.0,
    };
    line.write(&outcome);
    response
}

/// The per-source counters an outcome moves (besides requests and their duration).
fn count_outcome(
    ingress: &Ingress,
    entry: Option<&SourceEntry>,
    source_label: &str,
    outcome: &Result<Answer, Rejection>,
) {
    if let Err(rejection) = outcome {
        ingress.metrics.rejection(source_label, rejection.code());
    }
    let Some(entry) = entry else {
        return;
    };
    let metrics = &entry.metrics;
    match outcome {
        Ok(Answer::Challenge(_)) => metrics.handshakes.inc(),
        Ok(Answer::Delivered(delivered)) => {
            if delivered.duplicate {
                metrics.duplicates.inc();
            } else {
                metrics.accepted.inc();
            }
            if delivered.schema_violation.is_some() {
                metrics.schema_violations.inc();
            }
        }
        Err(Rejection::SchemaViolation(_)) => metrics.schema_violations.inc(),
        Err(_) => {}
    }
}

/// What every request's one log line carries.
struct LogLine<'a> {
    request_id: &'a str,
    source: &'a str,
    entry: Option<&'a SourceEntry>,
    /// The request's path, logged only as [`logged_path`] says.
    path: &'a str,
    status: u16,
    latency_ms: f64,
}

/// What a refusal's log line says of the path: the hook path as far as the relay recognised it
/// (the source's name, the event's when the source accepts it) and nothing it did not. A sender
/// that writes the token's delimiter wrongly (`/course.completed.50%3Ftoken=...`, `;token=`,
/// `&token=`, `/token=`) or pastes it as a segment puts the credential in the path; a segment the
/// relay did not recognise is never logged, and the query string never is.
fn logged_path(path: &str, entry: Option<&SourceEntry>, rejection: &Rejection) -> String {
    let Some(hook) = HookPath::parse(path) else {
        return "(not a hook path)".to_owned();
    };
    let Some(entry) = entry else {
        return "/hooks/(unknown source)".to_owned();
    };
    let source = entry.source.name.as_str();
    match hook.event {
        None => format!("/hooks/{source}"),
        Some(_) if matches!(rejection, Rejection::UnknownEvent) => {
            format!("/hooks/{source}/(unknown event)")
        }
        Some(event) if entry.source.event_type(Some(event)).is_some() => {
            format!("/hooks/{source}/{event}")
        }
        Some(_) => format!("/hooks/{source}/(unknown event)"),
    }
}

impl LogLine<'_> {
    fn write(&self, outcome: &Result<Answer, Rejection>) {
        let LogLine {
            request_id,
            source,
            entry,
            path,
            status,
            latency_ms,
        } = *self;
        match outcome {
            Ok(Answer::Challenge(_)) => tracing::info!(
                request_id,
                source,
                status,
                latency_ms,
                "handshake answered (url_verification): nothing published"
            ),
            Ok(Answer::Delivered(delivered)) => tracing::info!(
                request_id,
                source,
                event = delivered.event.event_type.as_str(),
                status,
                id = delivered.event.id.as_str(),
                topic = delivered.topic.as_str(),
                bytes = delivered.bytes,
                latency_ms,
                schema_violation = delivered
                    .schema_violation
                    .as_ref()
                    .map(|violation| violation.pointer.as_str()),
                "{}",
                if delivered.duplicate {
                    "duplicate"
                } else {
                    "accepted"
                }
            ),
            Err(rejection) if rejection.status().is_server_error() => tracing::warn!(
                request_id,
                source,
                path = logged_path(path, entry, rejection),
                status,
                code = rejection.code(),
                latency_ms,
                "refused"
            ),
            Err(rejection) => tracing::info!(
                request_id,
                source,
                path = logged_path(path, entry, rejection),
                status,
                code = rejection.code(),
                schema_violation = match rejection {
                    Rejection::SchemaViolation(violation) => Some(violation.pointer.as_str()),
                    _ => None,
                },
                latency_ms,
                "refused"
            ),
        }
    }
}

fn accepted_response(delivered: &Delivered) -> HttpResponse {
    let status = delivered.status;
    if status == StatusCode::NO_CONTENT {
        return HttpResponse::NoContent().finish();
    }
    let body = Accepted {
        id: &delivered.event.id,
        status: if delivered.duplicate {
            "duplicate"
        } else {
            "accepted"
        },
        topic: delivered.ack.map(|_| delivered.topic.as_str()),
        partition: delivered.ack.map(|ack| ack.partition),
        offset: delivered.ack.map(|ack| ack.offset),
    };
    HttpResponse::build(status)
        .content_type("application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
}

/// The sender's `x-request-id` when it is short and plain, else a new UUIDv7.
fn request_id(headers: &header::HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| {
            (1..=64).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string())
}

#[cfg(test)]
mod tests {
    use super::HookPath;

    #[test]
    fn hook_paths_name_a_source_and_maybe_an_event() {
        let parse = HookPath::parse;
        assert_eq!(
            parse("/hooks/tagmango/course.completed.50"),
            Some(HookPath {
                source: "tagmango",
                event: Some("course.completed.50")
            })
        );
        assert_eq!(
            parse("/hooks/github"),
            Some(HookPath {
                source: "github",
                event: None
            })
        );
        for other in [
            "/hooks/",
            "/hooks",
            "/hooks//x",
            "/hooks/a/",
            "/hooks/a/b/c",
            "/other/a",
            "/",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }
}
