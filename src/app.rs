//! The running relay: builds every part from a [`Config`], binds both listeners, and shuts down
//! in order (not ready → stop accepting → finish in-flight requests → flush the producer).

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};

use std::collections::HashMap;

use crate::admin::{self, Admin};
use crate::config::{AckMode, Config};
use crate::health::{Health, KafkaState};
use crate::idempotency::Idempotency;
use crate::ingress::{self, Ingress};
use crate::metrics::{Metrics, SourceMetrics};
use crate::publisher::{Publisher, Repairer};
use crate::reload::{ReloadRequest, Reloader};
use crate::spool::{DeadLetterRoute, Spool, SpoolParts, SpoolThreads};
use crate::tls::Certificates;
use crate::topics::{Topics, Watcher};

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("these Kafka topics do not exist, or this relay's Kafka user may not see them (ACL Describe): {}. Create them (or set kafka.create_topics = true), or grant Describe and Write on them", .0.join(", "))]
    MissingTopics(Vec<String>),
    #[error("cannot create the Kafka producer: {0}")]
    Producer(rdkafka::error::KafkaError),
    #[error("cannot create the missing Kafka topics: {0}")]
    CreateTopics(#[source] crate::publisher::TopicError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up TLS: {0}")]
    Tls(rustls::Error),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot open the spool in {dir}: {source}")]
    Spool {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
}

pub struct Application {
    config: Config,
    ingress: Server,
    admin: Server,
    ingress_port: u16,
    admin_port: u16,
    publisher: Arc<Publisher>,
    health: Arc<Health>,
    watcher: Watcher,
    repairer: Repairer,
    spool: Option<(Spool, SpoolThreads)>,
    reloader: Reloader,
    reload_requests: tokio::sync::mpsc::Receiver<ReloadRequest>,
    reload_sender: tokio::sync::mpsc::Sender<ReloadRequest>,
}

impl Application {
    /// Creates the producer, checks (or creates) the topics, and binds both listeners.
    /// A port of 0 in the configuration binds a free port; see [`Application::port`].
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        let metrics = Metrics::new();
        let publisher = Arc::new(
            Publisher::new(&config, metrics.kafka.clone()).map_err(StartupError::Producer)?,
        );
        let topics = Arc::new(Topics::new(config.required_topics()));
        let health = health_for(&config, &metrics);
        let idempotency = Arc::new(Idempotency::new(&config));
        let spool = if config.uses_spool() {
            Some(open_spool(&config, &metrics, &idempotency)?)
        } else {
            None
        };
        prepare_topics(&config, &topics, &publisher, &health).await?;
        let spool = match spool {
            Some((spool, parts)) => {
                health.watch_spool(spool.shared().clone());
                let threads = start_forwarder(&config, parts, &publisher, &metrics)?;
                Some((spool, threads))
            }
            None => None,
        };

        let ingress_state = web::Data::new(Ingress::new(
            &config,
            publisher.clone(),
            topics.clone(),
            health.clone(),
            metrics.clone(),
            spool.as_ref().map(|(spool, _)| spool.clone()),
            idempotency,
        ));
        let certificates = config.tls.clone().map(Certificates::new);
        if let Some(key) = &config.tls {
            crate::tls::watch_expiry(key, &metrics.tls_certificate_expiry);
        }
        let (ingress, ingress_port) =
            ingress_listener(&config, ingress_state.clone(), certificates.as_ref())?;

        let (reload, reload_requests) = tokio::sync::mpsc::channel(4);
        let reloader = Reloader {
            path: config.path.clone().unwrap_or_default(),
            started: config.clone(),
            ingress: ingress_state,
            topics: topics.clone(),
            publisher: publisher.clone(),
            certificates,
            certificate_expiry: metrics.tls_certificate_expiry.clone(),
            success: metrics.reload_success.clone(),
        };
        let (admin, admin_port) = admin_listener(
            &config,
            Admin {
                health: health.clone(),
                metrics,
                spool: spool.as_ref().map(|(spool, _)| spool.shared().clone()),
                reload: reload.clone(),
            },
        )?;

        let repairer = publisher.start_repairer().map_err(StartupError::Thread)?;
        let watcher = Watcher::spawn(
            topics,
            publisher.clone(),
            health.clone(),
            config.kafka.metadata_timeout_ms,
        )
        .map_err(StartupError::Thread)?;

        Ok(Application {
            config,
            ingress,
            admin,
            ingress_port,
            admin_port,
            publisher,
            health,
            watcher,
            repairer,
            spool,
            reloader,
            reload_requests,
            reload_sender: reload,
        })
    }

    /// The ingress port actually bound.
    pub fn port(&self) -> u16 {
        self.ingress_port
    }

    /// The admin port actually bound.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Serves until `stop` completes, then shuts down in order and returns the number of
    /// `memory`-mode records that were still not acknowledged by Kafka at the deadline (spooled
    /// records not yet delivered stay in the spool for the next start).
    pub async fn run_until(mut self, stop: impl Future<Output = ()>) -> std::io::Result<u64> {
        let ingress_handle = self.ingress.handle();
        let admin_handle = self.admin.handle();
        let mut ingress_task = tokio::spawn(self.ingress);
        let admin_task = tokio::spawn(self.admin);
        tracing::info!(
            ingress = %self.config.server.listen,
            tls = self.config.tls.is_some(),
            ingress_port = self.ingress_port,
            admin_port = self.admin_port,
            sources = self.config.sources.len(),
            "hookrelay is serving"
        );

        let hangups = reload_on_hangup(self.reload_sender.clone());
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                result = &mut ingress_task => {
                    tracing::error!(?result, "the ingress server stopped on its own");
                    break;
                }
                Some(reply) = self.reload_requests.recv() => {
                    let _ = reply.send(self.reloader.reload().await);
                }
            }
        }
        if let Some(hangups) = hangups {
            hangups.abort();
        }

        let started = Instant::now();
        self.health.begin_shutdown();
        tracing::info!("shutting down: not ready, finishing in-flight requests");
        ingress_handle.stop(true).await;
        let _ = ingress_task.await;

        let deadline = started + self.config.server.shutdown_timeout_ms;
        if let Some((spool, threads)) = self.spool {
            drain_spool(spool, threads, deadline).await;
        }
        let undelivered = flush_producer(self.publisher.clone(), deadline).await;

        admin_handle.stop(true).await;
        let _ = admin_task.await;
        self.watcher.stop();
        self.repairer.stop();
        Ok(undelivered)
    }
}

/// SIGHUP asks for a reload the same way `POST /-/reload` does.
fn reload_on_hangup(
    requests: tokio::sync::mpsc::Sender<ReloadRequest>,
) -> Option<tokio::task::JoinHandle<()>> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangup) => Some(tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP received: reloading the configuration");
                let (reply, _) = tokio::sync::oneshot::channel();
                if requests.send(reply).await.is_err() {
                    break;
                }
            }
        })),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reload with POST /-/reload");
            None
        }
    }
}

/// Lets the forwarder deliver what it can before `deadline`; the rest stays in the spool.
async fn drain_spool(spool: Spool, threads: SpoolThreads, deadline: Instant) {
    let left = tokio::task::spawn_blocking(move || threads.shutdown(&spool, deadline))
        .await
        .unwrap_or(0);
    if left == 0 {
        tracing::info!("spool drained: every spooled record is acknowledged by Kafka");
    } else {
        tracing::warn!(
            records = left,
            "records left in the spool; the next start delivers them"
        );
    }
}

/// Waits for Kafka's acknowledgements until `deadline`; returns the `memory`-mode records still
/// unacknowledged (spooled ones not yet acknowledged stay in the spool).
async fn flush_producer(publisher: Arc<Publisher>, deadline: Instant) -> u64 {
    let remaining_time = deadline.saturating_duration_since(Instant::now());
    let undelivered = tokio::task::spawn_blocking(move || publisher.flush(remaining_time))
        .await
        .unwrap_or(u64::MAX);
    if undelivered == 0 {
        tracing::info!("producer closed: no memory-mode record is left unacknowledged");
    } else {
        tracing::error!(
            undelivered,
            "shutdown deadline passed with records not acknowledged by Kafka"
        );
    }
    undelivered
}

/// Readiness as the sources' ack modes make it: a Kafka outage blocks `broker` sources, an
/// unreached Kafka blocks all but `spool` ones, a failing spool blocks only when every source
/// acks on it.
fn health_for(config: &Config, metrics: &Metrics) -> Arc<Health> {
    let acks = |mode: AckMode| config.sources.iter().map(move |source| source.ack == mode);
    Arc::new(Health::new(
        acks(AckMode::Broker).any(|broker| broker),
        acks(AckMode::Spool).any(|spool| !spool),
        acks(AckMode::Spool).all(|spool| spool),
        metrics.ready.clone(),
    ))
}

/// Starts the spool's forwarder, which publishes what the spool holds (what an earlier run left
/// first) with each source's metrics.
fn start_forwarder(
    config: &Config,
    parts: SpoolParts,
    publisher: &Arc<Publisher>,
    metrics: &Metrics,
) -> Result<SpoolThreads, StartupError> {
    let source_metrics: HashMap<String, Arc<SourceMetrics>> = config
        .sources
        .iter()
        .map(|source| {
            let name = source.name.as_str();
            (name.to_owned(), metrics.source(name))
        })
        .collect();
    parts
        .start_forwarder(
            publisher.clone(),
            source_metrics,
            metrics.forwarder_retries.clone(),
            metrics.spool_records_lost.clone(),
            DeadLetterRoute {
                topic: config.delivery.dead_letter_topic.clone(),
                total: metrics.dead_letters.clone(),
            },
        )
        .map_err(StartupError::Thread)
}

/// Checks that the required topics exist (creating them when allowed), and reads their record
/// limits before the first request, so that a record larger than its topic takes is refused
/// with 413. Kafka unreachable at start is not an error: the relay is not ready until it is.
async fn prepare_topics(
    config: &Config,
    topics: &Arc<Topics>,
    publisher: &Arc<Publisher>,
    health: &Arc<Health>,
) -> Result<(), StartupError> {
    match check_topics(topics, publisher, health, config).await {
        KafkaState::MissingTopics(missing) if config.kafka.create_topics => {
            publisher
                .create_topics(
                    &missing,
                    config.kafka.topic_partitions,
                    config.kafka.topic_replication,
                    config.kafka.metadata_timeout_ms,
                )
                .await
                .map_err(StartupError::CreateTopics)?;
            tracing::info!(topics = missing.join(", "), "created missing topics");
            // Kafka answers CreateTopics once its controller has them; the brokers' metadata
            // lists them a moment later.
            let deadline = tokio::time::Instant::now() + config.kafka.metadata_timeout_ms;
            loop {
                match check_topics(topics, publisher, health, config).await {
                    KafkaState::MissingTopics(still) if tokio::time::Instant::now() >= deadline => {
                        return Err(StartupError::MissingTopics(still))
                    }
                    KafkaState::MissingTopics(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await
                    }
                    _ => break,
                }
            }
        }
        KafkaState::MissingTopics(missing) => return Err(StartupError::MissingTopics(missing)),
        KafkaState::NotYetReached(reason) | KafkaState::Unreachable(reason) => {
            if health.is_ready() {
                tracing::warn!(
                    reason,
                    "Kafka metadata unreachable at start; events wait in the spool until it is"
                )
            } else {
                tracing::warn!(
                    reason,
                    "Kafka metadata unreachable at start; not ready until it is"
                )
            }
        }
        KafkaState::Ok => {}
    }
    if health.kafka() == KafkaState::Ok {
        let (topics, publisher) = (topics.clone(), publisher.clone());
        let timeout = config.kafka.metadata_timeout_ms;
        let _ =
            tokio::task::spawn_blocking(move || topics.refresh_limits(&publisher, timeout)).await;
    }
    Ok(())
}

/// Binds the ingress listener (HTTPS with `certificates`) and starts its workers.
fn ingress_listener(
    config: &Config,
    state: web::Data<Ingress>,
    certificates: Option<&Arc<Certificates>>,
) -> Result<(Server, u16), StartupError> {
    let (listener, port) = bind(config.server.listen)?;
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let shutdown_secs = config.server.shutdown_timeout_ms.as_secs().max(1);
    let tls = match certificates {
        Some(certificates) => Some(certificates.server_config().map_err(StartupError::Tls)?),
        None => None,
    };
    let server =
        ingress_server(listener, state, workers, shutdown_secs, tls).map_err(|source| {
            StartupError::Bind {
                address: config.server.listen,
                source,
            }
        })?;
    Ok((server, port))
}

/// Binds the admin listener (metrics, probes, reload): one worker, plain HTTP.
fn admin_listener(config: &Config, admin: Admin) -> Result<(Server, u16), StartupError> {
    let (listener, port) = bind(config.server.admin_listen)?;
    let state = web::Data::new(admin);
    let server =
        HttpServer::new(move || App::new().app_data(state.clone()).configure(admin::routes))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .listen(listener)
            .map_err(|source| StartupError::Bind {
                address: config.server.admin_listen,
                source,
            })?
            .run();
    Ok((server, port))
}

/// TLS handshakes a worker carries at once (actix-tls's default is 256).
const MAX_TLS_HANDSHAKES_PER_WORKER: usize = 16_384;

/// The ingress listener: actix-web's HTTP/1 service as `HttpServer` builds it, plus an
/// `Expect: 100-continue` check ([`ingress::expect`]), which `HttpServer` does not let one set:
/// a request the head checks refuse gets its final status instead of "100 Continue". With
/// `tls`, every connection is a TLS one first (the certificate from [`Certificates`]).
fn ingress_server(
    listener: TcpListener,
    state: web::Data<Ingress>,
    workers: usize,
    shutdown_secs: u64,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<Server> {
    use actix_http::{HttpService, KeepAlive, Request};
    use actix_service::{boxed, fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
    use actix_web::dev::AppConfig;

    let address = listener.local_addr()?;
    if tls.is_some() {
        // actix-tls lets a worker hold 256 handshakes in progress and stops accepting beyond
        // them: a few hundred idle sockets (each kept for the 3 s handshake timeout) would keep
        // real senders out. An idle handshake costs a socket and a few KiB, not CPU.
        actix_tls::accept::max_concurrent_tls_connect(MAX_TLS_HANDSHAKES_PER_WORKER);
    }
    let builder = actix_server::Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    Ok(builder
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(shutdown_secs)
        .listen("ingress", listener, move || {
            let expect_state = state.clone();
            let shutdown = shutdown.clone();
            let app = App::new()
                .app_data(state.clone())
                .configure(ingress::routes)
                .into_factory()
                .map_err(|error: actix_web::Error| error.error_response());
            // The same service over plain TCP or over TLS: the stream type is part of its
            // type, so it is written once and built for the one this listener uses.
            macro_rules! http_service {
                () => {
                    HttpService::build()
                        .graceful_shutdown_signal(move || {
                            let shutdown = shutdown.clone();
                            async move { shutdown.notified().await }
                        })
                        .keep_alive(KeepAlive::default())
                        .client_request_timeout(std::time::Duration::from_secs(5))
                        .client_disconnect_timeout(std::time::Duration::from_secs(1))
                        .local_addr(address)
                        .expect(fn_service(move |mut request: Request| {
                            let refusal =
                                ingress::expect(&expect_state, request.head(), request.peer_addr())
                                    .map(|refusal| {
                                        let reader = request.take_payload();
                                        ingress::hold_reader_until_written(refusal, reader)
                                    });
                            async move {
                                match refusal {
                                    None => Ok(request),
                                    Some(refusal) => Err(actix_http::Response::from(refusal)),
                                }
                            }
                        }))
                        .finish(map_config(app, |_| AppConfig::default()))
                };
            }
            // Boxed, so that both kinds of listener share this closure's type.
            match &tls {
                Some(tls) => {
                    boxed::factory(http_service!().rustls_0_23(tls.clone()).map_err(|_| ()))
                }
                None => boxed::factory(http_service!().tcp().map_err(|_| ())),
            }
        })?
        .run())
}

#[allow(clippy::type_complexity)]
fn open_spool(
    config: &Config,
    metrics: &Metrics,
    idempotency: &Arc<Idempotency>,
) -> Result<(Spool, SpoolParts), StartupError> {
    let dir = &config.delivery.spool_dir;
    let error = |source| StartupError::Spool {
        dir: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(error)?;
    let windows = (!idempotency.is_empty()).then(|| idempotency.clone());
    let started = std::time::Instant::now();
    // Opening takes the spool directory's lock: only then may the idempotency log beside it be
    // compacted (a second relay started on the same directory fails here, leaving it alone).
    let (spool, parts, recovery) = Spool::open(
        dir,
        config.delivery.spool_max_bytes,
        metrics,
        windows.clone(),
    )
    .map_err(error)?;
    if let Some(windows) = &windows {
        let loaded = windows.open_log(dir, &recovery.absent).map_err(error)?;
        tracing::info!(ids = loaded, "idempotency window restored");
    }
    tracing::info!(
        dir = %dir.display(),
        records = recovery.records,
        bytes = recovery.bytes,
        checkpoint = recovery.checkpoint,
        truncated_bytes = recovery.truncated_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "spool opened"
    );
    Ok((spool, parts))
}

async fn check_topics(
    topics: &Arc<Topics>,
    publisher: &Arc<Publisher>,
    health: &Arc<Health>,
    config: &Config,
) -> KafkaState {
    let (topics, publisher, health) = (topics.clone(), publisher.clone(), health.clone());
    let timeout = config.kafka.metadata_timeout_ms;
    tokio::task::spawn_blocking(move || topics.check(&publisher, &health, timeout))
        .await
        .unwrap_or_else(|error| KafkaState::NotYetReached(error.to_string()))
}

fn bind(address: std::net::SocketAddr) -> Result<(TcpListener, u16), StartupError> {
    let listener =
        TcpListener::bind(address).map_err(|source| StartupError::Bind { address, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { address, source })?
        .port();
    Ok((listener, port))
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
