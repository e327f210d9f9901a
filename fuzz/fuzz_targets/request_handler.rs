//! The whole ingress handler (`hookrelay::ingress::routes`) on hostile requests, through
//! `actix_web::test`: any method, path, query, headers, client address and body.
//!
//! The relay is configured with one source per authentication type, `ack = "memory"` and a
//! bootstrap address that is never reached (creating the producer does not connect). Two states
//! share the producer: one not ready (as at start before Kafka answers: valid events get 503
//! `not_ready`) and one marked ready, so that accepted events go on to the event id, key,
//! idempotency and producer steps. The fuzzer can ask for a request signed with the source's
//! secret (at a skewed clock), so the steps after authentication are reached for every scheme.
//!
//! Checked on every input: no panic; the status is one docs/api.md documents; every answer carries
//! `x-request-id`; every refusal is a problem-details body whose `status` and `code` agree with
//! the answer; nothing is accepted by the relay that is not ready, nor by a source that needs
//! credentials the request was not given. `HOOKRELAY_FUZZ_TRACE=1` prints every answer (to see
//! which steps a corpus reaches: `cargo +nightly fuzz run request_handler -- -runs=0`).

#![no_main]

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, Uri};
use actix_web::{test, web, App};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

use hookrelay::auth::Authenticator;
use hookrelay::config::Config;
use hookrelay::health::{Health, KafkaState};
use hookrelay::idempotency::Idempotency;
use hookrelay::ingress::{self, Ingress, PROBLEM_CONTENT_TYPE, REQUEST_ID_HEADER};
use hookrelay::metrics::Metrics;
use hookrelay::publisher::Publisher;
use hookrelay::topics::Topics;

/// Every status the HTTP API table of docs/api.md lists for the ingress listener.
const DOCUMENTED: &[u16] = &[
    200, 202, 204, 400, 401, 403, 404, 405, 408, 413, 415, 422, 429, 503,
];

/// `[sources.NAME]` of the configuration below, in the order `Target::Hook` picks them.
const SOURCES: &[&str] = &[
    "tagmango", "github", "open", "quiet", "stripe", "svix", "slack", "shopify", "signed", "basic",
    "bearer",
];

/// Topics that exist for the sources that accept any event (their topic is checked per event).
const EXISTING_TOPICS: &[&str] = &[
    "webhooks.github.push",
    "webhooks.github.ping",
    "webhooks.quiet.quiet.webhook",
    "webhooks.quiet.order",
    "webhooks.stripe.charge.succeeded",
    "webhooks.svix.svix.webhook",
    "webhooks.slack.event_callback",
    "webhooks.slack.url_verification",
    "webhooks.shopify.orders_create",
    "webhooks.signed.signed.webhook",
    "webhooks.basic.basic.webhook",
    "webhooks.bearer.bearer.webhook",
];

/// Header names worth trying; `HeaderChoice::Known` indexes this list.
const HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "authorization",
    "x-request-id",
    "x-forwarded-for",
    "x-hook-token",
    "x-hub-signature-256",
    "x-github-event",
    "x-github-delivery",
    "stripe-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-shopify-hmac-sha256",
    "x-shopify-topic",
    "x-shopify-event-id",
    "x-signature",
    "x-timestamp",
    "x-event-id",
    "x-key",
    "x-trace",
];

const SECRETS: &[(&str, &str)] = &[
    ("HOOKRELAY_FUZZ_TOKEN", "fuzz-token-Zq8wVb2Lr5Tn"),
    ("HOOKRELAY_FUZZ_HMAC", "fuzz-hmac-secret-Yk3Pd7Xs"),
    // whsec_ followed by the base64 of "fuzz standard webhooks key".
    (
        "HOOKRELAY_FUZZ_WHSEC",
        "whsec_ZnV6eiBzdGFuZGFyZCB3ZWJob29rcyBrZXk=",
    ),
];

fn config_text(schemas: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:1"
max_body_bytes = 65536
body_timeout_ms = 2000
trusted_proxies = ["10.0.0.0/8"]

[kafka]
brokers = "127.0.0.1:1"
create_topics = false

[kafka.options]
"message.timeout.ms" = "1000"

[delivery]
ack = "memory"

[sources.tagmango]
events = ["course.completed", "order.created.completed"]
auth = {{ type = "token", in = "query", name = "token", secrets = ["env:HOOKRELAY_FUZZ_TOKEN"] }}
idempotency = {{ fields = ["/courseId", "/email", "/lastProgressOn"], ttl_secs = 60, max_entries = 1000 }}
key = "/email"
schema = "{schemas}/{{source}}/{{event}}.json"

[sources.github]
auth = {{ type = "github", secrets = ["env:HOOKRELAY_FUZZ_HMAC"] }}
forward_headers = ["x-trace"]

[sources.open]
events = ["ping", "order.created"]
auth = {{ type = "none" }}
success_status = 202
content_types = ["application/json", "text/plain"]
rate_limit = {{ per_second = 2000, burst = 200 }}
allow_ips = ["127.0.0.1", "10.1.0.0/16", "2001:db8::/32"]
event_id_from = "header:x-event-id"
key = "header:x-key"
idempotency = {{ fields = ["body"], ttl_secs = 60, max_entries = 1000 }}

[sources.quiet]
auth = {{ type = "none" }}
success_status = 204
max_body_bytes = 256
event_from = "/kind"

[sources.stripe]
auth = {{ type = "stripe", secrets = ["env:HOOKRELAY_FUZZ_HMAC"] }}

[sources.svix]
auth = {{ type = "standard-webhooks", secrets = ["env:HOOKRELAY_FUZZ_WHSEC"] }}

[sources.slack]
auth = {{ type = "slack", secrets = ["env:HOOKRELAY_FUZZ_HMAC"] }}

[sources.shopify]
auth = {{ type = "shopify", secrets = ["env:HOOKRELAY_FUZZ_HMAC"] }}

[sources.signed]
auth = {{ type = "hmac", header = "x-signature", algorithm = "sha512", encoding = "base64", prefix = "sha512=", signed = "{{timestamp}}.{{body}}", timestamp_header = "x-timestamp", secrets = ["env:HOOKRELAY_FUZZ_HMAC"] }}

[sources.basic]
auth = {{ type = "basic", user = "fuzz", secrets = ["env:HOOKRELAY_FUZZ_TOKEN"] }}

[sources.bearer]
auth = {{ type = "token", in = "header", name = "authorization", secrets = ["env:HOOKRELAY_FUZZ_TOKEN"] }}
"#
    )
}

/// The relay's configuration and its two ingress states, built once per process.
struct Fixture {
    config: Config,
    not_ready: web::Data<Ingress>,
    ready: web::Data<Ingress>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        for (name, value) in SECRETS {
            std::env::set_var(name, value);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let schemas = root.join("config/schemas");
        let file = std::env::temp_dir().join(format!("hookrelay-fuzz-{}.toml", std::process::id()));
        std::fs::write(&file, config_text(&schemas.display().to_string()))
            .expect("write the fuzz configuration");
        let config = Config::load(&file).unwrap_or_else(|errors| panic!("{errors}"));
        let _ = std::fs::remove_file(&file);

        let metrics = Metrics::new();
        let publisher =
            Arc::new(Publisher::new(&config, metrics.kafka.clone()).expect("create the producer"));
        let required = config
            .sources
            .iter()
            .filter_map(|source| source.known_topics())
            .flatten()
            .collect();
        let topics = Arc::new(Topics::new(required));
        for topic in EXISTING_TOPICS {
            topics.insert((*topic).to_owned());
        }
        let state = |ready: bool| {
            let health = Arc::new(Health::new(false, true, false, metrics.ready.clone()));
            if ready {
                health.set_kafka(KafkaState::Ok);
            }
            assert_eq!(health.is_ready(), ready);
            web::Data::new(Ingress::new(
                &config,
                publisher.clone(),
                topics.clone(),
                health,
                metrics.clone(),
                None,
                Arc::new(Idempotency::new(&config)),
            ))
        };
        Fixture {
            not_ready: state(false),
            ready: state(true),
            config,
        }
    })
}

/// rust-rdkafka 0.39 leaks one 24-byte queue handle per client (`Client::new` passes
/// `rd_kafka_queue_get_main()` to `rd_kafka_set_log_queue` and never destroys the handle): once per
/// producer, not per request. LeakSanitizer reads this at start-up, so the per-input leak check
/// still covers everything else.
#[no_mangle]
pub extern "C" fn __lsan_default_suppressions() -> *const std::os::raw::c_char {
    c"leak:rd_kafka_queue_new0\n".as_ptr()
}

thread_local! {
    /// actix-web services are not `Send`: one single-threaded runtime for the fuzzing thread.
    static SYSTEM: RefCell<actix_web::rt::SystemRunner> = RefCell::new(actix_web::rt::System::new());
}

#[derive(Arbitrary, Debug)]
enum Target<'a> {
    /// `/hooks/{SOURCES[source]}[/{event}][?{query}]`.
    Hook {
        source: u8,
        event: Option<&'a str>,
        query: Option<&'a str>,
    },
    /// Any request target.
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum HeaderChoice<'a> {
    Known(u8),
    Raw(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
struct Header<'a> {
    name: HeaderChoice<'a>,
    value: &'a [u8],
    /// Add beside an existing value instead of replacing it.
    append: bool,
}

#[derive(Arbitrary, Debug)]
enum Peer {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: u8,
    ready: bool,
    target: Target<'a>,
    /// Send `Content-Type: application/json` before the fuzzed headers.
    json: bool,
    /// Sign (or add the credentials of) the request with the source's secret, at the relay's
    /// clock shifted by this many seconds.
    sign: Option<i16>,
    peer: Option<Peer>,
    headers: Vec<Header<'a>>,
    body: &'a [u8],
}

fn method(byte: u8) -> Method {
    match byte % 10 {
        0 => Method::GET,
        1 => Method::PUT,
        2 => Method::HEAD,
        3 => Method::OPTIONS,
        4 => Method::DELETE,
        5 => Method::PATCH,
        6 => Method::from_bytes(b"PROPFIND").unwrap_or(Method::TRACE),
        _ => Method::POST,
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fuzz_target!(
    init: {
        fixture();
    },
    |input: Input<'_>| {
    let fixture = fixture();
    let (uri, source) = match &input.target {
        Target::Hook {
            source,
            event,
            query,
        } => {
            let name = SOURCES[usize::from(*source) % SOURCES.len()];
            let mut uri = format!("/hooks/{name}");
            if let Some(event) = event {
                uri.push('/');
                uri.push_str(event);
            }
            if let Some(query) = query {
                uri.push('?');
                uri.push_str(query);
            }
            (uri, Some(name))
        }
        Target::Raw(target) => ((*target).to_owned(), None),
    };
    // A target the HTTP parser would refuse never reaches the handler.
    let Ok(parsed) = Uri::from_str(&uri) else {
        return;
    };
    let authenticator: Option<&Authenticator> = source.and_then(|name| {
        fixture
            .config
            .sources
            .iter()
            .find(|source| source.name.as_str() == name)
            .map(|source| &source.auth)
    });

    let mut uri = uri;
    let mut signed_headers = Vec::new();
    if let (Some(skew), Some(auth)) = (input.sign, authenticator) {
        let now = SystemTime::now();
        let at = if skew >= 0 {
            now + Duration::from_secs(skew.unsigned_abs().into())
        } else {
            now - Duration::from_secs(skew.unsigned_abs().into())
        };
        let signed = auth.sign(input.body, at);
        signed_headers = signed.headers;
        if let Some((name, value)) = signed.query {
            uri.push(if parsed.query().is_some() { '&' } else { '?' });
            uri.push_str(&format!("{}={}", percent_encode(&name), percent_encode(&value)));
        }
    }
    if Uri::from_str(&uri).is_err() {
        return;
    }

    let mut request = test::TestRequest::default()
        .method(method(input.method))
        .uri(&uri)
        .set_payload(input.body.to_vec());
    if let Some(peer) = &input.peer {
        request = request.peer_addr(match *peer {
            Peer::V4(octets, port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(octets)), port),
            Peer::V6(octets, port) => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port),
        });
    }
    if input.json {
        request = request.insert_header(("content-type", "application/json"));
    }
    for (name, value) in &signed_headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) else {
            panic!("sign produced a header that is not valid HTTP: {name}");
        };
        request = request.insert_header((name, value));
    }
    for header in input.headers.iter().take(12) {
        let name = match &header.name {
            HeaderChoice::Known(index) => {
                Ok(HeaderName::from_static(HEADERS[usize::from(*index) % HEADERS.len()]))
            }
            HeaderChoice::Raw(bytes) => HeaderName::from_bytes(bytes),
        };
        let (Ok(name), Ok(value)) = (name, HeaderValue::from_bytes(header.value)) else {
            continue;
        };
        request = if header.append {
            request.append_header((name, value))
        } else {
            request.insert_header((name, value))
        };
    }

    let state = if input.ready {
        fixture.ready.clone()
    } else {
        fixture.not_ready.clone()
    };
    let credentials_given = input.sign.is_some() && authenticator.is_some();
    let needs_credentials = authenticator.is_some_and(|auth| auth.method() != "none");

    SYSTEM.with(|system| {
        system.borrow().block_on(async move {
            let app =
                test::init_service(App::new().app_data(state).configure(ingress::routes)).await;
            let response = test::call_service(&app, request.to_request()).await;
            let status = response.status().as_u16();
            assert!(DOCUMENTED.contains(&status), "undocumented status {status}");
            assert!(
                response.headers().contains_key(REQUEST_ID_HEADER),
                "answer {status} without x-request-id"
            );
            let success = response.status().is_success();
            if success {
                assert!(input.ready, "a relay that is not ready answered {status}");
                assert!(
                    !needs_credentials || credentials_given,
                    "answered {status} to a request without credentials"
                );
            }
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let body = test::read_body(response).await;
            if std::env::var_os("HOOKRELAY_FUZZ_TRACE").is_some() {
                eprintln!("status {status} {}", String::from_utf8_lossy(&body));
            }
            if !success {
                assert_eq!(content_type.as_deref(), Some(PROBLEM_CONTENT_TYPE));
                let problem: serde_json::Value =
                    serde_json::from_slice(&body).expect("a problem-details body");
                assert_eq!(problem["status"], status, "{problem}");
                assert!(problem["code"].is_string(), "{problem}");
            }
        })
    });
}
);
