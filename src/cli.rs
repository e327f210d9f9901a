//! The command line: `serve`, `check-config`, `tail`, `sign`, `register`, `spool status`,
//! `spool dead`.
//!
//! Exit codes: 0 success, 1 the relay failed at run time, 2 bad usage or configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::app::{self, Application};
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::register::{self, shell_quote};
use crate::tail::{self, StartAt, Tail};
use crate::telemetry;

#[derive(Parser)]
#[command(
    name = "hookrelay",
    version,
    about = "Webhooks in, their raw bytes in Kafka."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Serve {
        /// Configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Validate a configuration file (and its environment overrides and secrets), then exit.
    CheckConfig {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Print the records of a topic: position, key, headers and value.
    Tail {
        /// Configuration file (for the Kafka brokers and options).
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Topic to read.
        #[arg(long, short)]
        topic: String,
        /// Where to start reading.
        #[arg(long, value_enum, default_value_t = StartAt::Beginning)]
        from: StartAt,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<usize>,
        /// Stop when no record arrived for this many milliseconds (default: follow forever).
        #[arg(long)]
        idle_exit_ms: Option<u64>,
        /// Print only how many records the topic holds (read from the beginning until nothing
        /// arrives for 2 s), then exit.
        #[arg(long)]
        count: bool,
    },
    /// Print a `curl` command that posts a body to a source with valid credentials or signature
    /// (made now, with the source's first secret), to test a running deployment.
    Sign {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// The source to post to.
        #[arg(long, short)]
        source: String,
        /// The `{event}` path segment, if any.
        #[arg(long, short)]
        event: Option<String>,
        /// The file holding the body to send.
        #[arg(long, short)]
        body: PathBuf,
        /// Base URL of the relay.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Subscribe the relay at the sender (TagMango's integration API): one hook URL per event,
    /// built from the public URL, the source and its first token.
    Register {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// The source to register (it needs a `register` table).
        #[arg(long, short)]
        source: String,
        /// Where senders reach the relay, such as https://relay.example.com.
        #[arg(long)]
        public_url: String,
        /// An event to register (repeatable); default: every event of the source's list.
        #[arg(long = "event", short)]
        events: Vec<String>,
        /// Only this course's events (the sender's `course` filter).
        #[arg(long, group = "filter")]
        course: Option<String>,
        /// Only this mango's events (the sender's `mango` filter).
        #[arg(long, group = "filter")]
        mango: Option<String>,
        /// Only this webinar's events (the sender's `webinar` filter).
        #[arg(long, group = "filter")]
        webinar: Option<String>,
        /// Print the calls as curl commands instead of making them.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run, print the token and the API key instead of masking them.
        #[arg(long, requires = "dry_run")]
        show_secrets: bool,
        /// Accept an http:// public URL (the token would travel in clear text).
        #[arg(long)]
        allow_http: bool,
    },
    /// Inspect the durable spool.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// Records and bytes waiting for Kafka, the oldest record's age, and the checkpoint.
    Status {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// The dead-letter directory: records Kafka refused for good that the dead-letter topic
    /// could not take either.
    Dead {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        #[command(subcommand)]
        command: DeadCommand,
    },
}

#[derive(Subcommand)]
enum DeadCommand {
    /// One line per record: sequence number, received time, source, topic, reason, size.
    List,
    /// A record's topic, key and headers on stderr, and its body, byte for byte, on stdout.
    Show { seq: u64 },
    /// Publishes records to their topic again (all with --all); each one Kafka acknowledges is
    /// removed from the directory.
    Retry {
        seqs: Vec<u64>,
        #[arg(long, conflicts_with = "seqs")]
        all: bool,
    },
    /// Deletes records for good.
    Drop {
        #[arg(required = true)]
        seqs: Vec<u64>,
    },
}

const EXIT_FAILURE: u8 = 1;
const EXIT_CONFIG: u8 = 2;

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::CheckConfig { config } => check_config(&config),
        Command::Tail {
            config,
            topic,
            count: true,
            ..
        } => count_records(&config, &topic),
        Command::Tail {
            config,
            topic,
            from,
            max,
            idle_exit_ms,
            count: false,
        } => tail(
            &config,
            &topic,
            from,
            max,
            idle_exit_ms.map(Duration::from_millis),
        ),
        Command::Spool {
            command: SpoolCommand::Status { config },
        } => spool_status(&config),
        Command::Spool {
            command: SpoolCommand::Dead { config, command },
        } => spool_dead(&config, command),
        Command::Sign {
            config,
            source,
            event,
            body,
            url,
        } => sign(&config, &source, event.as_deref(), &body, &url),
        Command::Register {
            config,
            source,
            public_url,
            events,
            course,
            mango,
            webinar,
            dry_run,
            show_secrets,
            allow_http,
        } => register(
            &config,
            &source,
            &register::Request {
                public_url,
                events,
                course,
                mango,
                webinar,
                allow_http,
            },
            dry_run.then_some(show_secrets),
        ),
    }
}

/// `register`; `dry_run` is `Some(show_secrets)` to print the calls instead of making them.
fn register(
    path: &std::path::Path,
    source: &str,
    request: &register::Request,
    dry_run: Option<bool>,
) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let Some(source) = config.sources.iter().find(|s| s.name.as_str() == source) else {
        eprintln!(
            "hookrelay register: no source {source:?} in {}",
            path.display()
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let plan = match register::Plan::new(source, request) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("hookrelay register: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let api_key = || {
        register::api_key(source.name.as_str(), &plan.api_key_reference).map_err(|error| {
            eprintln!("hookrelay register: {error}");
            ExitCode::from(EXIT_CONFIG)
        })
    };
    if let Some(show_secrets) = dry_run {
        // Masked, the calls show even where the key is not at hand.
        let key = match show_secrets.then(api_key).transpose() {
            Ok(key) => key,
            Err(code) => return code,
        };
        for command in plan.curl_commands(key.as_deref()) {
            println!("{command}");
        }
        return ExitCode::SUCCESS;
    }
    let api_key = match api_key() {
        Ok(key) => key,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hookrelay register: cannot start: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let outcomes = runtime.block_on(plan.send(&api_key));
    for outcome in &outcomes {
        println!("{}", outcome.line());
    }
    let failed = outcomes
        .iter()
        .filter(|outcome| !outcome.succeeded())
        .count();
    if failed == 0 {
        eprintln!(
            "hookrelay register: {} events registered at {}",
            outcomes.len(),
            plan.api_url
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "hookrelay register: {failed} of {} events not registered (run again for those: --event NAME)",
            outcomes.len()
        );
        ExitCode::from(EXIT_FAILURE)
    }
}

fn sign(
    path: &std::path::Path,
    source: &str,
    event: Option<&str>,
    body_path: &std::path::Path,
    url: &str,
) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let Some(source) = config.sources.iter().find(|s| s.name.as_str() == source) else {
        eprintln!("hookrelay sign: no source {source:?} in {}", path.display());
        return ExitCode::from(EXIT_CONFIG);
    };
    let body = match std::fs::read(body_path) {
        Ok(body) => body,
        Err(error) => {
            eprintln!(
                "hookrelay sign: cannot read {}: {error}",
                body_path.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let signed = source.auth.sign(&body, std::time::SystemTime::now());
    let mut target = format!("{}/hooks/{}", url.trim_end_matches('/'), source.name);
    if let Some(event) = event {
        target.push('/');
        target.extend(form_urlencoded::byte_serialize(event.as_bytes()));
    }
    if let Some((name, value)) = &signed.query {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair(name, value)
            .finish();
        target.push('?');
        target.push_str(&query);
    }
    let content_type = source
        .content_types
        .first()
        .map_or("application/json", String::as_str);
    let mut command = format!("curl -sS -X POST {}", shell_quote(&target));
    command.push_str(&format!(
        " \\\n  -H {}",
        shell_quote(&format!("content-type: {content_type}"))
    ));
    for (name, value) in &signed.headers {
        command.push_str(&format!(
            " \\\n  -H {}",
            shell_quote(&format!("{name}: {value}"))
        ));
    }
    command.push_str(&format!(
        " \\\n  --data-binary {}",
        shell_quote(&format!("@{}", body_path.display()))
    ));
    println!("{command}");
    ExitCode::SUCCESS
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errors| {
        eprintln!("{}: invalid configuration:\n{errors}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

/// The settings alone, for tools that need no source (and so no sender's secret).
fn load_settings(path: &std::path::Path) -> Result<crate::config::Settings, ExitCode> {
    Config::load_settings(path).map_err(|errors| {
        eprintln!("{}: invalid configuration:\n{errors}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

/// The settings as written, with the Kafka credentials they reference resolved (for the
/// commands that talk to Kafka without serving).
fn load_kafka_settings(path: &std::path::Path) -> Result<crate::config::Settings, ExitCode> {
    let mut settings = load_settings(path)?;
    let bad = match crate::config::resolve_kafka_secrets(&mut settings.kafka) {
        Ok(()) => crate::config::check_kafka_options(&settings.kafka),
        Err(bad) => bad,
    };
    if bad.is_empty() {
        return Ok(settings);
    }
    for (key, reason) in bad {
        eprintln!("{}: kafka.options.\"{key}\": {reason}", path.display());
    }
    Err(ExitCode::from(EXIT_CONFIG))
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    println!("{}: ok", path.display());
    if let Some(key) = &config.tls {
        match crate::tls::expires_at(key) {
            Some(expiry) => {
                let date = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_secs(expiry.max(0) as u64),
                );
                println!("  tls: certificate valid until {date}");
                if let Some(warning) =
                    crate::tls::expiry_warning(expiry, std::time::SystemTime::now())
                {
                    println!("  warning: server.tls: {warning}");
                }
            }
            None => println!("  warning: server.tls: cannot read the certificate's expiry date"),
        }
    }
    for source in &config.sources {
        let topics = source.known_topics().map_or_else(
            || format!("{:?} (any event)", source.topic),
            |topics| topics.join(", "),
        );
        println!(
            "  source {}: auth {}, ack {}, topics {}",
            source.name,
            source.auth.method(),
            source.ack.as_str(),
            topics
        );
        if let (Some(identity), Some(samples)) = (&source.identity, &source.samples) {
            for (key, warning) in
                crate::identity::sample_warnings(&source.name, identity, &source.events, samples)
            {
                println!("  warning: {key}: {warning}");
            }
        }
    }
    ExitCode::SUCCESS
}

fn serve(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    telemetry::init(config.telemetry.format, &config.telemetry.level);
    let result = actix_web::rt::System::new().block_on(async move {
        let application = Application::build(config).await?;
        let undelivered = application
            .run_until(app::shutdown_signal())
            .await
            .map_err(|error| anyhow::anyhow!(error))?;
        anyhow::Ok(undelivered)
    });
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(undelivered) => {
            eprintln!("hookrelay: {undelivered} records were not acknowledged by Kafka before the shutdown deadline");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(error) => {
            eprintln!("hookrelay: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn tail(
    path: &std::path::Path,
    topic: &str,
    from: StartAt,
    max: Option<usize>,
    idle: Option<Duration>,
) -> ExitCode {
    let settings = match load_kafka_settings(path) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let reader = match Tail::open(
        &settings.kafka.brokers,
        &settings.kafka.options,
        topic,
        from,
        settings.kafka.metadata_timeout_ms,
    ) {
        Ok(reader) => reader,
        Err(error) => {
            eprintln!("hookrelay tail: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut seen = 0usize;
    let mut last = Instant::now();
    while max.is_none_or(|max| seen < max) && idle.is_none_or(|idle| last.elapsed() < idle) {
        match reader.next(Duration::from_millis(200)) {
            Ok(Some(record)) => {
                seen += 1;
                last = Instant::now();
                if tail::print(&mut out, topic, &record).is_err() {
                    // Standard output closed (e.g. piped into `head`).
                    return ExitCode::SUCCESS;
                }
            }
            Ok(None) => {}
            Err(error) => eprintln!("hookrelay tail: {error}"),
        }
    }
    ExitCode::SUCCESS
}

fn count_records(path: &std::path::Path, topic: &str) -> ExitCode {
    let settings = match load_kafka_settings(path) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match tail::count(
        &settings.kafka.brokers,
        &settings.kafka.options,
        topic,
        settings.kafka.metadata_timeout_ms,
        Duration::from_secs(2),
    ) {
        Ok(count) => {
            println!("{count}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("hookrelay tail: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn spool_status(path: &std::path::Path) -> ExitCode {
    let settings = match load_settings(path) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let dir = &settings.delivery.spool_dir;
    match crate::spool::Status::read(dir) {
        Ok(status) => {
            println!("spool:       {}", dir.display());
            println!("records:     {}", status.records);
            println!("bytes:       {}", status.bytes);
            println!("segments:    {}", status.segments);
            println!("checkpoint:  {}", status.checkpoint);
            if status.corrupt_records > 0 {
                println!(
                    "corrupt:     {} records the disk damaged (skipped; see .seg.corrupt copies)",
                    status.corrupt_records
                );
            }
            match status.oldest_age {
                Some(age) => println!("oldest age:  {:.1} s", age.as_secs_f64()),
                None => println!("oldest age:  - (empty)"),
            }
            ExitCode::SUCCESS
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            println!("spool:       {} (does not exist yet: empty)", dir.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "hookrelay spool status: cannot read {}: {error}",
                dir.display()
            );
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `spool dead list`: one line per dead letter.
fn print_dead_letter(seq: u64, letter: &crate::spool::dead::DeadLetter) {
    let stored = &letter.stored;
    let received = std::time::UNIX_EPOCH + Duration::from_millis(stored.received_ms);
    println!(
        "{seq}\t{}\t{}\t{}\t{}\t{} bytes",
        humantime::format_rfc3339_millis(received),
        stored.source,
        stored.topic,
        letter.reason,
        stored.value.len()
    );
}

/// `spool dead show`: topic, key and headers on stderr, the body byte for byte on stdout.
fn show_dead_letter(letter: &crate::spool::dead::DeadLetter) -> bool {
    use std::io::Write;
    let stored = &letter.stored;
    eprintln!("topic: {}", stored.topic);
    eprintln!("key: {}", String::from_utf8_lossy(&stored.key));
    for (name, value) in &stored.headers {
        eprintln!("{name}: {}", String::from_utf8_lossy(value));
    }
    std::io::stdout().write_all(&stored.value).is_ok()
}

/// `spool dead retry`: publishes a dead letter to its topic (without its dead-letter reason) and
/// removes it once Kafka acknowledged it.
fn retry_dead_letter(
    kafka: &crate::config::KafkaSettings,
    dead: &crate::spool::dead::DeadLetters,
    seq: u64,
    letter: &crate::spool::dead::DeadLetter,
) -> bool {
    let stored = &letter.stored;
    let headers: Vec<(&str, &[u8])> = stored
        .headers
        .iter()
        .filter(|(name, _)| name != crate::record::DEAD_REASON_HEADER)
        .map(|(name, value)| (name.as_str(), value.as_slice()))
        .collect();
    let record = crate::publisher::Record {
        topic: &stored.topic,
        key: &stored.key,
        value: &stored.value,
        headers: crate::publisher::headers(&headers),
    };
    let timeout = kafka.metadata_timeout_ms.max(Duration::from_secs(5));
    match crate::publisher::publish_once(kafka, record, timeout) {
        Ok(ack) => match dead.remove(seq) {
            Ok(()) => {
                println!(
                    "{seq}: published to {} (partition {}, offset {}) and removed",
                    stored.topic, ack.partition, ack.offset
                );
                true
            }
            Err(error) => {
                eprintln!("{seq}: published, but cannot remove it: {error}");
                false
            }
        },
        Err(error) => {
            eprintln!("{seq}: Kafka refused it again ({error}); kept");
            false
        }
    }
}

fn spool_dead(path: &std::path::Path, command: DeadCommand) -> ExitCode {
    let settings = match load_kafka_settings(path) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let dead = crate::spool::dead::DeadLetters::new(&settings.delivery.spool_dir);
    let fail = |error: std::io::Error| {
        eprintln!("hookrelay spool dead: {error}");
        ExitCode::from(EXIT_FAILURE)
    };
    let seqs = match &command {
        DeadCommand::List | DeadCommand::Retry { all: true, .. } => match dead.list() {
            Ok(seqs) => seqs,
            Err(error) => return fail(error),
        },
        DeadCommand::Show { seq } => vec![*seq],
        DeadCommand::Retry { seqs, .. } | DeadCommand::Drop { seqs } => seqs.clone(),
    };
    let mut failed = false;
    for seq in seqs {
        let letter = match dead.read(seq) {
            Ok(letter) => letter,
            Err(error) => {
                eprintln!("hookrelay spool dead: record {seq}: {error}");
                failed = true;
                continue;
            }
        };
        let done = match &command {
            DeadCommand::List => {
                print_dead_letter(seq, &letter);
                true
            }
            DeadCommand::Show { .. } => show_dead_letter(&letter),
            DeadCommand::Retry { .. } => retry_dead_letter(&settings.kafka, &dead, seq, &letter),
            DeadCommand::Drop { .. } => match dead.remove(seq) {
                Ok(()) => {
                    println!("{seq}: dropped");
                    true
                }
                Err(error) => {
                    eprintln!("{seq}: {error}");
                    false
                }
            },
        };
        failed |= !done;
    }
    if failed {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}
