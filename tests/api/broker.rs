//! Apache Kafka for the tests: nodes started by `scripts/kafka-broker` (KRaft, the version
//! `scripts/lib.sh` pins and `docker-compose.yml` runs), each with a log directory of its own
//! under the target directory. One single-node broker (broker and controller in one) is shared by
//! every test of the binary ([`broker`]); a test that freezes or kills a broker starts its own
//! ([`PrivateBroker`]); `tests/cluster` builds a replicated cluster from brokers and controllers
//! of their own. Every node dies with the test binary (parent-death signal).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use std::net::{TcpListener, TcpStream};

/// How long a node may take to answer metadata (a JVM start on a loaded 2-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// One Kafka node: a `scripts/kafka-broker` process (the JVM itself: the script execs it).
pub struct KafkaNode {
    pub node_id: u32,
    pub address: String,
    pub dir: PathBuf,
    /// The launcher's arguments, kept to restart the node on the same log directory.
    args: Vec<String>,
    /// A KRaft controller only: it serves no metadata, so it is ready once it says it started.
    controller_only: bool,
    /// How many times the log said "Kafka Server started" before the current start.
    starts_before: usize,
    process: Option<Child>,
}

impl KafkaNode {
    /// Starts a node; [`KafkaNode::wait_ready`] waits until it serves.
    pub fn spawn(
        dir: PathBuf,
        node_id: u32,
        port: u16,
        controller_port: u16,
        voters: &str,
        cluster_id: &str,
        extra: &[String],
    ) -> KafkaNode {
        let mut args: Vec<String> = [
            "--dir",
            &dir.display().to_string(),
            "--node-id",
            &node_id.to_string(),
            "--port",
            &port.to_string(),
            "--controller-port",
            &controller_port.to_string(),
            "--voters",
            voters,
            "--cluster-id",
            cluster_id,
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        args.extend(extra.iter().cloned());
        let controller_only = extra
            .windows(2)
            .any(|pair| pair == ["--roles", "controller"]);
        let mut node = KafkaNode {
            node_id,
            address: format!("127.0.0.1:{port}"),
            dir,
            args,
            controller_only,
            starts_before: 0,
            process: None,
        };
        node.start();
        node
    }

    fn start(&mut self) {
        self.starts_before = self.starts_logged();
        let mut command = Command::new("bash");
        command
            .arg(repo_path("scripts/kafka-broker"))
            .args(&self.args)
            // Test nodes start often and carry little: a small heap, and the quick compiler
            // only (the JVM's start costs the other tests' CPU on a 2-core machine).
            .env("KAFKA_HEAP_OPTS", "-Xms128m -Xmx512m")
            .env(
                "KAFKA_JVM_OPTS",
                "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.with_extension("launcher.log"))
                    .expect("launcher log"),
            ));
        self.process = Some(spawn_tied_to_this_process(command).unwrap_or_else(|error| {
            panic!(
                "cannot start Apache Kafka with scripts/kafka-broker ({error}): it needs bash, \
                 Java 17+ and Maven (scripts/test installs them)"
            )
        }));
    }

    /// How often the node's log says it started (`scripts/kafka-broker` appends to it).
    fn starts_logged(&self) -> usize {
        std::fs::read_to_string(self.dir.join("server.log"))
            .unwrap_or_default()
            .matches("Kafka Server started")
            .count()
    }

    /// Whether the process is still there (frozen or not).
    #[allow(dead_code)] // tests/cluster
    pub fn is_running(&mut self) -> bool {
        match &mut self.process {
            Some(process) => process.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Panics with the node's log if its process has ended.
    fn assert_alive(&mut self, doing: &str) {
        if let Some(status) = self
            .process
            .as_mut()
            .and_then(|p| p.try_wait().ok().flatten())
        {
            panic!(
                "Kafka node {} exited ({status}) {doing}: {}",
                self.node_id,
                self.log_tail()
            );
        }
    }

    /// Waits until the node serves: a broker answers a metadata request that lists it (it has
    /// joined the cluster and is not fenced), a controller has said it started.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        if self.controller_only {
            while self.starts_logged() <= self.starts_before {
                self.assert_alive("before it was ready");
                assert!(
                    Instant::now() < deadline,
                    "Kafka controller {} not started after {READY_TIMEOUT:?}: {}",
                    self.node_id,
                    self.log_tail()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        wait_for_port(&self.address, READY_TIMEOUT);
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .set("log_level", "0")
            .create()
            .expect("metadata client");
        loop {
            self.assert_alive("before it was ready");
            let listed = consumer
                .fetch_metadata(None, Duration::from_secs(2))
                .is_ok_and(|metadata| {
                    metadata
                        .brokers()
                        .iter()
                        .any(|broker| broker.id() == self.node_id as i32)
                });
            if listed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Kafka node {} not ready after {READY_TIMEOUT:?}: {}",
                self.node_id,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The end of the node's own log and of its launcher's, for a failure message.
    pub fn log_tail(&self) -> String {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        let log = read(&self.dir.join("server.log"));
        let launcher = read(&self.dir.with_extension("launcher.log"));
        let tail = |text: &str| text[text.len().saturating_sub(3000)..].to_owned();
        format!("launcher: {}\nserver.log: {}", tail(&launcher), tail(&log))
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("node is running").id()
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child process.
        let result = unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        assert_eq!(result, 0, "signal {signal} to Kafka node {}", self.node_id);
    }

    /// Freezes the node: connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills the node at once (`kill -9`): what it had not written to its log is gone.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Stops the node as an orchestrator would (SIGTERM, a controlled shutdown) and waits.
    #[allow(dead_code)] // tests/cluster
    pub fn terminate(&mut self) {
        if let Some(mut process) = self.process.take() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(process.id() as libc::pid_t, libc::SIGTERM) };
            let _ = process.wait();
        }
    }

    /// Starts the node again on its log directory, and waits until it serves.
    #[allow(dead_code)] // tests/cluster
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "restart a node that was stopped");
        self.start();
        self.wait_ready();
    }
}

impl Drop for KafkaNode {
    fn drop(&mut self) {
        if let Some(process) = &self.process {
            // SAFETY: signalling our own child process (a frozen one cannot die otherwise).
            unsafe { libc::kill(process.id() as libc::pid_t, libc::SIGCONT) };
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("launcher.log"));
    }
}

/// A directory for a node's log, under the target directory; directories left by earlier test
/// processes (which cannot remove them: the shared broker lives until the process ends) are
/// removed the first time.
pub fn node_dir() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let root = ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kafka");
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let owner = name.split('-').next().unwrap_or_default();
                if !Path::new("/proc").join(owner).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        std::fs::create_dir_all(&root).expect("kafka test directory");
        root
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    root.join(format!("{}-{n}", std::process::id()))
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

pub fn wait_for_port(address: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(address).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {address} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A cluster id for `scripts/kafka-broker` (Kafka's Uuid: 16 bytes in base64url).
pub fn cluster_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::now_v7().as_bytes())
}

/// A single-node cluster on free ports, ready.
pub fn single_node(extra: &[String]) -> KafkaNode {
    let (port, controller_port) = (free_port(), free_port());
    let mut node = KafkaNode::spawn(
        node_dir(),
        1,
        port,
        controller_port,
        &format!("1@127.0.0.1:{controller_port}"),
        &cluster_id(),
        extra,
    );
    node.wait_ready();
    node
}

/// The broker every test of the binary shares.
pub struct Broker {
    pub address: String,
    _node: KafkaNode,
}

/// The shared broker, started on first use.
pub fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| {
        let started = Instant::now();
        let node = single_node(&[]);
        eprintln!("Apache Kafka ready in {:.1?}", started.elapsed());
        Broker {
            address: node.address.clone(),
            _node: node,
        }
    })
}

/// A broker of one test's own, which the test may pause (SIGSTOP) and resume (SIGCONT).
pub struct PrivateBroker {
    pub address: String,
    node: KafkaNode,
}

impl PrivateBroker {
    pub fn start() -> PrivateBroker {
        let node = single_node(&[]);
        PrivateBroker {
            address: node.address.clone(),
            node,
        }
    }

    /// Freezes the broker: connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.node.pause();
    }

    pub fn resume(&self) {
        self.node.resume();
    }
}

/// Spawns `command` from a thread that lives as long as the test process, with the parent-death
/// signal set, so the child dies with the test binary whatever way it ends (the signal follows
/// the thread that forked, so that thread never ends).
pub fn spawn_tied_to_this_process(command: Command) -> std::io::Result<Child> {
    type Request = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (sender, requests) = std::sync::mpsc::channel::<Request>();
        std::thread::spawn(move || {
            use std::os::unix::process::CommandExt;
            for (mut command, reply) in requests {
                // SAFETY: prctl is async-signal-safe and only affects the child being started.
                unsafe {
                    command.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let _ = reply.send(command.spawn());
            }
        });
        std::sync::Mutex::new(sender)
    });
    let (reply, answer) = std::sync::mpsc::channel();
    spawner
        .lock()
        .expect("spawner lock")
        .send((command, reply))
        .expect("spawner thread runs");
    answer.recv().expect("spawner answers")
}
