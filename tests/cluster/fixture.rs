//! The cluster: brokers 1–3 and KRaft controllers 11–13, each a `scripts/kafka-broker` process
//! with its own ports and log directory, shared by the tests one at a time ([`cluster`]).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use tokio::sync::{Mutex, MutexGuard};

use crate::broker::{cluster_id, free_port, node_dir, KafkaNode};

/// Replicas of every topic, and how many must have a record before it is acknowledged.
pub const REPLICAS: usize = 3;
pub const MIN_IN_SYNC: usize = 2;

/// A partition's name, leader and count of in-sync replicas.
type Partition = (String, i32, usize);

/// How long the cluster may take to have every replica in sync again after a fault.
const HEAL_TIMEOUT: Duration = Duration::from_secs(180);

pub struct Cluster {
    pub brokers: Vec<KafkaNode>,
    pub controllers: Vec<KafkaNode>,
    /// `bootstrap.servers` for clients: every broker.
    pub bootstrap: String,
    metadata: BaseConsumer,
}

/// The cluster, started on first use; a test holds the guard for as long as it runs.
pub async fn cluster() -> MutexGuard<'static, Cluster> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    let cluster = match CLUSTER.get() {
        Some(cluster) => cluster,
        None => {
            let started = tokio::task::spawn_blocking(Cluster::start)
                .await
                .expect("cluster starts");
            // Another test may have started one meanwhile; the spare one stops when dropped.
            let _ = CLUSTER.set(Mutex::new(started));
            CLUSTER.get().expect("cluster set")
        }
    };
    let mut guard = cluster.lock().await;
    tokio::task::block_in_place(|| guard.heal());
    guard
}

impl Cluster {
    fn start() -> Cluster {
        let started = Instant::now();
        let id = cluster_id();
        let controller_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let voters = controller_ports
            .iter()
            .enumerate()
            .map(|(n, port)| format!("{}@127.0.0.1:{port}", 11 + n))
            .collect::<Vec<_>>()
            .join(",");
        let replicated: Vec<String> = [
            format!("default.replication.factor={REPLICAS}"),
            format!("min.insync.replicas={MIN_IN_SYNC}"),
            format!("offsets.topic.replication.factor={REPLICAS}"),
            format!("transaction.state.log.replication.factor={REPLICAS}"),
            format!("transaction.state.log.min.isr={MIN_IN_SYNC}"),
            format!("share.coordinator.state.topic.replication.factor={REPLICAS}"),
            format!("share.coordinator.state.topic.min.isr={MIN_IN_SYNC}"),
        ]
        .into_iter()
        .flat_map(|property| ["--set".to_owned(), property])
        .collect();
        let with_role = |role: &str| {
            let mut extra = vec!["--roles".to_owned(), role.to_owned()];
            extra.extend(replicated.iter().cloned());
            extra
        };
        let mut controllers: Vec<KafkaNode> = controller_ports
            .iter()
            .enumerate()
            .map(|(n, port)| {
                KafkaNode::spawn(
                    node_dir(),
                    11 + n as u32,
                    free_port(),
                    *port,
                    &voters,
                    &id,
                    &with_role("controller"),
                )
            })
            .collect();
        let mut brokers: Vec<KafkaNode> = (1..=3)
            .map(|node_id| {
                KafkaNode::spawn(
                    node_dir(),
                    node_id,
                    free_port(),
                    free_port(),
                    &voters,
                    &id,
                    &with_role("broker"),
                )
            })
            .collect();
        for node in controllers.iter_mut().chain(brokers.iter_mut()) {
            node.wait_ready();
        }
        let bootstrap = brokers
            .iter()
            .map(|broker| broker.address.clone())
            .collect::<Vec<_>>()
            .join(",");
        let metadata = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("log_level", "0")
            .create()
            .expect("metadata client");
        eprintln!(
            "Apache Kafka cluster (3 brokers, 3 controllers) ready in {:.1?}",
            started.elapsed()
        );
        Cluster {
            brokers,
            controllers,
            bootstrap,
            metadata,
        }
    }

    /// Undoes whatever an earlier test left: frozen nodes resume, stopped ones start again, and
    /// every partition has all its replicas in sync.
    pub fn heal(&mut self) {
        for node in self.controllers.iter_mut().chain(self.brokers.iter_mut()) {
            if node.is_running() {
                node.resume();
            } else {
                node.kill();
                node.restart();
            }
        }
        self.wait_in_sync(None, REPLICAS);
    }

    /// Waits until every partition (of `topic`, or of every topic) has a leader and `replicas`
    /// replicas in sync, and every broker is listed.
    pub fn wait_in_sync(&self, topic: Option<&str>, replicas: usize) {
        let deadline = Instant::now() + HEAL_TIMEOUT;
        loop {
            let state = self.partition_state(topic);
            match &state {
                Ok((brokers, partitions))
                    if *brokers == self.brokers.len()
                        && partitions
                            .iter()
                            .all(|(_, leader, isr)| *leader >= 0 && *isr == replicas) =>
                {
                    return
                }
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "the cluster is not in sync after {HEAL_TIMEOUT:?}: {state:?}\n{}",
                self.log_tails()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Brokers listed, and (partition, leader, in-sync replicas) of `topic` or of every topic.
    fn partition_state(&self, topic: Option<&str>) -> Result<(usize, Vec<Partition>), String> {
        let metadata = self
            .metadata
            .fetch_metadata(topic, Duration::from_secs(5))
            .map_err(|error| error.to_string())?;
        let partitions = metadata
            .topics()
            .iter()
            .flat_map(|topic| {
                topic.partitions().iter().map(|partition| {
                    (
                        format!("{}/{}", topic.name(), partition.id()),
                        partition.leader(),
                        partition.isr().len(),
                    )
                })
            })
            .collect();
        Ok((metadata.brokers().len(), partitions))
    }

    /// The broker leading partition 0 of `topic` (an index into [`Cluster::brokers`]).
    pub fn leader_of(&self, topic: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leader = self
                .partition_state(Some(topic))
                .ok()
                .and_then(|(_, partitions)| partitions.first().map(|(_, leader, _)| *leader));
            if let Some(index) = leader.and_then(|leader| {
                self.brokers
                    .iter()
                    .position(|broker| broker.node_id as i32 == leader)
            }) {
                return index;
            }
            assert!(
                Instant::now() < deadline,
                "{topic} has no leader: {leader:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The in-sync replicas of partition 0 of `topic`.
    pub fn in_sync(&self, topic: &str) -> usize {
        self.partition_state(Some(topic))
            .ok()
            .and_then(|(_, partitions)| partitions.first().map(|(_, _, isr)| *isr))
            .unwrap_or(0)
    }

    /// The active KRaft controller (an index into [`Cluster::controllers`]): the leader of the
    /// latest epoch in the quorum state the running controllers keep on disk
    /// (`__cluster_metadata-0/quorum-state`); waits while that is `except` (a controller just
    /// killed) or none.
    pub fn active_controller(&mut self, except: Option<usize>) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let states: Vec<(u64, i64)> = self
                .controllers
                .iter_mut()
                .filter_map(|node| {
                    if !node.is_running() {
                        return None;
                    }
                    let path = node.dir.join("data/__cluster_metadata-0/quorum-state");
                    let state: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
                    Some((state["leaderEpoch"].as_u64()?, state["leaderId"].as_i64()?))
                })
                .collect();
            let leader = states.iter().max().map(|(_, leader)| *leader);
            if let Some(index) = leader.and_then(|leader| {
                self.controllers
                    .iter()
                    .position(|node| i64::from(node.node_id) == leader)
            }) {
                if Some(index) != except {
                    return index;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no active controller (epoch, leader): {states:?}\n{}",
                self.log_tails()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tails(&self) -> String {
        self.controllers
            .iter()
            .chain(self.brokers.iter())
            .map(|node| format!("--- node {}\n{}", node.node_id, node.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
