//! The test harness: Apache Kafka started once per test binary (`broker`), relays spawned
//! in-process from typed `Settings` on ports the system chooses (port 0) with a unique topic
//! prefix per test (a TOML file is written from the settings for reloads and the CLI), and
//! readers for what arrived in Kafka.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookrelay::app::Application;
use hookrelay::config::Config;
use hookrelay::settings::{
    AckMode, AuthSettings, IdempotencySettings, SchemaMode, Settings, SourceSettings,
    TokenAuthSettings, TokenLocation,
};
use hookrelay::tail::{StartAt, Tail, TailRecord};
use tokio::sync::oneshot;

pub use crate::broker::{broker, free_port, repo_path, wait_for_port, PrivateBroker};

pub const TOKEN: &str = "test-token-7f3a";

/// The configuration file shipped with the relay.
pub const DEFAULT_CONFIG: &str = "config/hookrelay.toml";

/// Every TagMango sample shipped in `samples/tagmango/`, by event type.
pub const TAGMANGO_SAMPLES: &[&str] = &[
    "course.completed.50",
    "order.created.completed",
    "order.recurring.created",
    "subscription.expired",
    "user.deleted",
    "webinar.completed.all",
    "webinar.reminder.15min",
];

/// Validates `source`'s events against the schemas shipped in `config/schemas/` (an absolute
/// path: a relative one is resolved against the working directory).
pub fn use_schemas(source: &mut SourceSettings, mode: SchemaMode) {
    source.schema = Some(format!(
        "{}/config/schemas/{{source}}/{{event}}.json",
        env!("CARGO_MANIFEST_DIR")
    ));
    source.schema_mode = Some(mode);
}

pub fn sample(event: &str) -> Vec<u8> {
    std::fs::read(repo_path(&format!("samples/tagmango/{event}.json"))).expect("sample exists")
}

/// Two different free ports (the ingress and admin listeners must differ).
fn two_free_ports() -> (u16, u16) {
    loop {
        let (first, second) = (free_port(), free_port());
        if first != second {
            return (first, second);
        }
    }
}

/// Runs `hookrelay serve` as a process with `config` and waits until its ingress listens;
/// returns the process and the ingress address (`127.0.0.1:PORT`).
pub async fn start_relay_process(config: &mut TestConfig) -> (Child, String) {
    start_relay_process_logging(config, Stdio::null()).await
}

/// [`start_relay_process`] with the relay's log (its stderr) going to `log`.
pub async fn start_relay_process_logging(
    config: &mut TestConfig,
    log: impl Into<Stdio>,
) -> (Child, String) {
    config.on_free_ports();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
    command
        .args(["serve", "--config"])
        .arg(&config.path)
        .stdout(Stdio::null())
        .stderr(log);
    // Dies with the test binary, also when the test panics before it stops the relay.
    let relay = crate::broker::spawn_tied_to_this_process(command).expect("relay starts");
    let address = format!("127.0.0.1:{}", config.ingress_port());
    let waited = address.clone();
    tokio::task::spawn_blocking(move || wait_for_port(&waited, Duration::from_secs(30)))
        .await
        .expect("port waiter");
    (relay, address)
}

/// Stops a relay process as an orchestrator would (SIGTERM) and waits for it.
pub fn stop_relay_process(relay: &mut Child) {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(relay.id() as libc::pid_t, libc::SIGTERM) };
    let _ = relay.wait();
}

/// A unique topic prefix, so tests never see each other's records.
pub fn unique_prefix() -> String {
    format!("it-{}", uuid::Uuid::now_v7().simple())
}

/// What varies between test relays.
pub struct Options {
    pub brokers: String,
    pub ack: AckMode,
    pub max_body_bytes: usize,
    pub body_timeout_ms: u64,
    pub broker_timeout_ms: u64,
    pub shutdown_timeout_ms: u64,
    /// Create topics at start; the MockCluster has no topic admin API.
    pub create_topics: bool,
    pub spool_max_bytes: u64,
    /// `[kafka.options]`: librdkafka properties.
    pub kafka_options: &'static [(&'static str, &'static str)],
}

impl Default for Options {
    /// On the shared broker (started on first use).
    fn default() -> Self {
        Options::on(broker().address.clone())
    }
}

impl Options {
    /// The defaults, on `brokers`.
    pub fn on(brokers: String) -> Options {
        Options {
            brokers,
            ack: AckMode::Broker,
            max_body_bytes: 65_536,
            body_timeout_ms: 2_000,
            broker_timeout_ms: 5_000,
            shutdown_timeout_ms: 5_000,
            create_topics: true,
            spool_max_bytes: 64 * 1024 * 1024,
            kafka_options: &[],
        }
    }
}

/// `127.0.0.1:port`; port 0 lets the system choose when the relay binds.
pub fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A test relay's settings, with a directory of its own holding the token file, the spool and
/// the configuration file written from the settings (for reloads and the CLI).
pub struct TestConfig {
    dir: tempfile::TempDir,
    /// What the relay runs with: edit, then spawn (or [`TestConfig::save`] and reload).
    pub settings: Settings,
    /// The configuration file, as last written by [`TestConfig::save`].
    pub path: PathBuf,
    pub prefix: String,
}

impl TestConfig {
    /// A relay on ports the system chooses, with the TagMango source on a topic prefix of its
    /// own, authenticated by [`TOKEN`] in the query.
    pub fn new(options: &Options) -> TestConfig {
        let mut config = TestConfig::empty();
        let settings = &mut config.settings;
        settings.server.listen = localhost(0);
        settings.server.admin_listen = localhost(0);
        settings.server.max_body_bytes = options.max_body_bytes;
        settings.server.body_timeout_ms = Duration::from_millis(options.body_timeout_ms);
        settings.server.shutdown_timeout_ms = Duration::from_millis(options.shutdown_timeout_ms);
        settings.server.workers = 2;
        settings.kafka.brokers = options.brokers.clone();
        settings.kafka.create_topics = options.create_topics;
        settings.kafka.topic_partitions = 1;
        settings.kafka.metadata_timeout_ms = Duration::from_millis(3_000);
        for (key, value) in options.kafka_options {
            settings
                .kafka
                .options
                .insert((*key).to_owned(), (*value).to_owned());
        }
        settings.delivery.ack = options.ack;
        settings.delivery.broker_timeout_ms = Duration::from_millis(options.broker_timeout_ms);
        settings.delivery.spool_max_bytes = options.spool_max_bytes;
        settings.telemetry.level = "info".to_owned();
        let mut tagmango = SourceSettings::new(AuthSettings::Token(TokenAuthSettings {
            location: TokenLocation::Query,
            name: "token".to_owned(),
            secrets: vec![config.token_secret()],
        }));
        tagmango.topic = format!("{}.{{source}}.{{event}}", config.prefix);
        tagmango.events = Some(TAGMANGO_SAMPLES.iter().map(|e| (*e).to_owned()).collect());
        tagmango.idempotency = Some(IdempotencySettings::new(&[
            "/courseId",
            "/email",
            "/lastProgressOn",
        ]));
        tagmango.key = Some("/email".to_owned());
        config
            .settings
            .sources
            .insert("tagmango".to_owned(), tagmango);
        config.save();
        config
    }

    /// The shipped `config/hookrelay.toml` as it is, but for what a test must own: its
    /// listeners, the broker, the spool directory, a topic prefix, the token (a file instead of
    /// an environment variable) and absolute paths to the schemas and samples.
    pub fn shipped(brokers: &str) -> TestConfig {
        let mut config = TestConfig::empty();
        let spool_dir = config.settings.delivery.spool_dir.clone();
        let mut settings = Config::load_settings(&repo_path(DEFAULT_CONFIG))
            .unwrap_or_else(|errors| panic!("{errors}"));
        settings.server.listen = localhost(0);
        settings.server.admin_listen = localhost(0);
        settings.kafka.brokers = brokers.to_owned();
        settings.kafka.create_topics = true;
        settings.kafka.topic_partitions = 1;
        settings.delivery.spool_dir = spool_dir;
        let root = env!("CARGO_MANIFEST_DIR");
        let tagmango = settings
            .sources
            .get_mut("tagmango")
            .expect("a tagmango source");
        tagmango.topic = format!("{}.{{source}}.{{event}}", config.prefix);
        for template in [&mut tagmango.schema, &mut tagmango.samples] {
            let relative = template.as_deref().expect("shipped schema and samples");
            *template = Some(format!("{root}/{relative}"));
        }
        config.settings = settings;
        config.set_token_secrets(vec![config.token_secret()]);
        config
    }

    /// No sources, the spool in the test's directory, the token file written.
    fn empty() -> TestConfig {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("tagmango.token"), TOKEN).expect("token file");
        let mut settings = Settings::default();
        settings.delivery.spool_dir = dir.path().join("spool");
        TestConfig {
            path: dir.path().join("hookrelay.toml"),
            settings,
            prefix: unique_prefix(),
            dir,
        }
    }

    /// `file:` secret of the token file holding [`TOKEN`].
    fn token_secret(&self) -> String {
        format!("file:{}", self.dir.path().join("tagmango.token").display())
    }

    /// The TagMango source's settings.
    pub fn tagmango(&mut self) -> &mut SourceSettings {
        self.settings
            .sources
            .get_mut("tagmango")
            .expect("a tagmango source")
    }

    /// Writes the settings and reads the file back as the relay would: the settings must come
    /// back unchanged (in-process relays are built from the settings, reloads and the CLI read
    /// the file).
    pub fn assert_file_round_trips(&self) {
        self.save();
        let loaded = Config::load_settings(&self.path).unwrap_or_else(|errors| panic!("{errors}"));
        assert_eq!(
            serde_json::to_value(&loaded).unwrap(),
            serde_json::to_value(&self.settings).unwrap(),
            "{}",
            std::fs::read_to_string(&self.path).unwrap()
        );
    }

    /// Writes the settings to [`TestConfig::path`].
    pub fn save(&self) {
        let text = toml::to_string(&self.settings).expect("settings serialise to TOML");
        std::fs::write(&self.path, text).expect("config file");
    }

    /// Points the configuration at the shared broker, creating the topics it needs.
    pub fn use_shared_broker(&mut self) {
        self.settings.kafka.brokers = broker().address.clone();
        self.settings.kafka.create_topics = true;
        self.save();
    }

    /// Gives the listeners fixed free ports (a relay process must be found at a known address).
    pub fn on_free_ports(&mut self) {
        let (ingress, admin) = two_free_ports();
        self.settings.server.listen = localhost(ingress);
        self.settings.server.admin_listen = localhost(admin);
        self.save();
    }

    /// The port the relay's ingress listens on (after [`TestConfig::on_free_ports`]).
    pub fn ingress_port(&self) -> u16 {
        let port = self.settings.server.listen.port();
        assert_ne!(port, 0, "a relay process needs on_free_ports()");
        port
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.settings.delivery.spool_dir.clone()
    }

    /// A file beside the configuration.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces the TagMango source's token secrets (`file:/path`, `env:NAME`) and saves.
    pub fn set_token_secrets(&mut self, secrets: Vec<String>) {
        match &mut self.tagmango().auth {
            AuthSettings::Token(token) => token.secrets = secrets,
            other => panic!("the tagmango source is authenticated by token: {other:?}"),
        }
        self.save();
    }

    pub fn topic(&self, event: &str) -> String {
        format!("{}.tagmango.{event}", self.prefix)
    }
}

/// A relay running in this process.
pub struct TestApp {
    pub address: String,
    pub admin_address: String,
    pub config: TestConfig,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<u64>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    spawn_from_config(TestConfig::new(&options)).await
}

pub async fn spawn_from_config(config: TestConfig) -> TestApp {
    config.save();
    let mut loaded =
        Config::from_settings(config.settings.clone()).unwrap_or_else(|errors| panic!("{errors}"));
    // Reloads read the file written from the same settings.
    loaded.path = Some(config.path.clone());
    let application = Application::build(loaded)
        .await
        .unwrap_or_else(|error| panic!("relay starts: {error:?}"));
    let address = format!("http://127.0.0.1:{}", application.port());
    let admin_address = format!("http://127.0.0.1:{}", application.admin_port());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(application.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        admin_address,
        config,
        client: reqwest::Client::new(),
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    pub fn hook_url(&self, event: &str) -> String {
        format!("{}/hooks/tagmango/{event}?token={TOKEN}", self.address)
    }

    /// Posts a course-progress body that no other call of this test posts (its own event id).
    pub async fn post_unique(&self, event: &str) -> reqwest::Response {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = format!(
            "{{\"email\":\"s{n}@example.com\",\"courseId\":\"c{n}\",\"lastProgressOn\":\"2023-11-20T18:30Z\"}}"
        );
        self.post_json(&self.hook_url(event), body.into_bytes())
            .await
    }

    pub async fn post_sample(&self, event: &str) -> reqwest::Response {
        self.post_json(&self.hook_url(event), sample(event)).await
    }

    /// Posts a distinct event and asserts that it was accepted (200).
    pub async fn accept_unique(&self, event: &str) {
        assert_accepted(self.post_unique(event).await, event).await;
    }

    /// Posts the sample of `event` and returns the JSON answer.
    pub async fn post_sample_json(&self, event: &str) -> serde_json::Value {
        self.post_sample(event)
            .await
            .json()
            .await
            .expect("a JSON answer")
    }

    /// Posts the sample of `event` and asserts that it was accepted (200).
    pub async fn accept_sample(&self, event: &str) {
        assert_accepted(self.post_sample(event).await, event).await;
    }

    pub async fn post_json(&self, url: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `GET` on the admin listener.
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.admin_address))
            .send()
            .await
            .expect("admin listener answers")
    }

    /// A scrape of the admin listener's `/metrics`.
    /// `POST /-/reload` on the admin listener; its JSON outcome.
    pub async fn reload(&self) -> serde_json::Value {
        self.client
            .post(format!("{}/-/reload", self.admin_address))
            .send()
            .await
            .expect("reload request")
            .json()
            .await
            .expect("reload outcome")
    }

    pub async fn metrics(&self) -> String {
        self.admin_get("/metrics")
            .await
            .text()
            .await
            .expect("metrics text")
    }

    /// Posts the seed sample with a token no configuration accepts.
    pub async fn post_with_wrong_token(&self) -> reqwest::Response {
        let url = format!(
            "{}/hooks/tagmango/course.completed.50?token=wrong",
            self.address
        );
        self.post_json(&url, sample("course.completed.50")).await
    }

    pub fn socket_address(&self) -> SocketAddr {
        self.address
            .trim_start_matches("http://")
            .parse()
            .expect("socket address")
    }

    /// Stops the relay and hands back its configuration, to start it again.
    pub async fn stop_keeping_config(mut self) -> TestConfig {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        std::mem::replace(&mut self.config, TestConfig::empty())
    }

    /// Stops the relay the way a signal would, and returns the count of unacknowledged records.
    pub async fn shutdown(mut self) -> u64 {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("relay task").expect("relay shutdown"),
            None => 0,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Reads up to `count` records of `topic` from the shared broker (waits at most `idle` for each).
pub fn read_topic(topic: &str, count: usize, idle: Duration) -> Vec<TailRecord> {
    read_topic_from(&broker().address, topic, count, idle)
}

/// [`read_topic`] from async tests.
pub async fn read_records(topic: String, count: usize, idle: Duration) -> Vec<TailRecord> {
    tokio::task::spawn_blocking(move || read_topic(&topic, count, idle))
        .await
        .expect("reader thread")
}

/// The first record of `topic` on `brokers`, waiting up to 10 s (as many as arrive then).
pub async fn read_topic_from_async(brokers: String, topic: String) -> Vec<TailRecord> {
    tokio::task::spawn_blocking(move || {
        read_topic_from(&brokers, &topic, 1, Duration::from_secs(10))
    })
    .await
    .expect("reader thread")
}

/// Every record of `topic` on `brokers` (until none arrives for 5 s).
pub async fn read_topic_from_async_all(brokers: String, topic: String) -> Vec<TailRecord> {
    tokio::task::spawn_blocking(move || {
        read_topic_from(&brokers, &topic, usize::MAX, Duration::from_secs(5))
    })
    .await
    .expect("reader thread")
}

pub fn read_topic_from(
    brokers: &str,
    topic: &str,
    count: usize,
    idle: Duration,
) -> Vec<TailRecord> {
    let tail = Tail::open(
        brokers,
        std::iter::empty(),
        topic,
        StartAt::Beginning,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    tail.collect(count, idle)
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Sends raw bytes on a new connection and returns what the server answered before closing or
/// `timeout`. Write errors are ignored: the server may answer and close before the body ends.
pub fn raw_exchange(address: SocketAddr, parts: &[(&[u8], Duration)], timeout: Duration) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(timeout))
        .expect("read timeout");
    for (bytes, pause) in parts {
        if stream.write_all(bytes).is_err() {
            break;
        }
        std::thread::sleep(*pause);
    }
    read_response(&mut stream)
}

pub fn read_response(stream: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                response.extend_from_slice(&buffer[..read]);
                if complete_response(&response) {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

/// Whether `bytes` holds a whole HTTP/1.1 response with a Content-Length body.
fn complete_response(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .is_some_and(|length| body.len() >= length)
}

/// The status code of a raw HTTP response.
pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// Asserts a problem-details answer with `status` and `code`, and returns its body.
pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok()),
        Some("application/problem+json")
    );
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["code"], code, "problem code in {body}");
    assert_eq!(body["status"], status, "problem status in {body}");
    assert!(body["detail"]
        .as_str()
        .is_some_and(|detail| !detail.is_empty()));
    body
}

/// Posts `count` distinct events, `parallel` at a time; returns the ids answered 200 and the
/// answers that were not 200 (status, code).
pub async fn post_many(
    app_url: &str,
    count: usize,
    parallel: usize,
) -> (Vec<String>, Vec<(u16, String)>) {
    let client = reqwest::Client::new();
    let url = format!("{app_url}/hooks/tagmango/course.completed.50?token={TOKEN}");
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    let mut batch = Vec::new();
    for n in 0..count {
        let body = format!(
            "{{\"email\":\"p{n}@example.com\",\"courseId\":\"c\",\"lastProgressOn\":\"2023-11-20T18:30Z\",\"n\":{n}}}"
        );
        batch.push(
            client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send(),
        );
        if batch.len() == parallel || n + 1 == count {
            for response in futures_util::future::join_all(batch.drain(..)).await {
                match response {
                    Ok(response) if response.status().as_u16() == 200 => {
                        let body: serde_json::Value = response.json().await.unwrap();
                        accepted.push(body["id"].as_str().unwrap().to_owned());
                    }
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body: serde_json::Value = response.json().await.unwrap_or_default();
                        refused.push((status, body["code"].as_str().unwrap_or("").to_owned()));
                    }
                    Err(error) => refused.push((0, error.to_string())),
                }
            }
        }
    }
    (accepted, refused)
}

/// Asserts a 200, showing the answer otherwise.
async fn assert_accepted(response: reqwest::Response, what: &str) {
    let status = response.status().as_u16();
    assert_eq!(
        status,
        200,
        "{what}: {}",
        response.text().await.unwrap_or_default()
    );
}
