//! The faults of a real month, each in `spool` and in `broker` mode: a relay with a steady stream
//! of distinct events, one fault injected mid-stream and healed, then every acknowledged id read
//! back. Each test asserts that nothing answered 200 was lost and that the relay accepts again
//! by itself; `spool` sources never refuse for Kafka's sake, `broker` sources refuse only with
//! 503 and Retry-After. Figures of every run: `target/tmp/cluster-faults.txt`.

use std::time::{Duration, Instant};

use hookrelay::settings::AckMode;

use crate::fixture::{cluster, Cluster, MIN_IN_SYNC, REPLICAS};
use crate::helpers::{start_relay_process_logging, stop_relay_process, Options, TestConfig, TOKEN};
use crate::stream::{Reader, Report, Stream};

const EVENT: &str = "course.completed.50";
/// How long the stream runs before the fault and after it healed.
const STEADY: Duration = Duration::from_secs(3);
/// How long every acknowledged event may take to be readable once the cluster is whole.
const READ_BACK: Duration = Duration::from_secs(120);

/// Runs a relay in `ack` mode against the cluster with a stream of events, calls `fault` (which
/// returns once the fault has healed), and reports what the sender and a consumer saw.
async fn survive(
    name: &str,
    ack: AckMode,
    kafka_options: &'static [(&'static str, &'static str)],
    fault: impl FnOnce(&mut Cluster, &str),
) -> Report {
    let mut cluster = cluster().await;
    let mut config = TestConfig::new(&Options {
        ack,
        kafka_options,
        ..Options::on(cluster.bootstrap.clone())
    });
    config.settings.kafka.topic_replication = REPLICAS as i32;
    let topic = config.topic(EVENT);
    // A process of its own, as operators run it: its log is what they would read.
    let log_path = config.file("relay.log");
    let log = std::fs::File::create(&log_path).expect("relay log");
    let (mut relay, address) = start_relay_process_logging(&mut config, log).await;
    let url = format!("http://{address}/hooks/tagmango/{EVENT}?token={TOKEN}");
    let stream = Stream::start(url, 4, Duration::from_millis(20)).await;
    let reader = Reader::start(&cluster.bootstrap, &topic);
    tokio::time::sleep(STEADY).await;
    tokio::task::block_in_place(|| fault(&mut cluster, &topic));
    let healed = Instant::now();
    tokio::task::block_in_place(|| cluster.wait_in_sync(Some(&topic), REPLICAS));
    tokio::time::sleep(STEADY).await;
    let outcomes = stream.stop().await;
    let acknowledged: Vec<String> = outcomes.iter().filter_map(|o| o.id.clone()).collect();
    reader.wait_for(&acknowledged, READ_BACK).await;
    // Copies published late (a resend after a timeout) arrive after the originals.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = reader.stop();
    stop_relay_process(&mut relay);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let report = Report::new(&format!("{name} ({ack:?})"), &outcomes, &seen, healed, &log);
    report.record();
    assert!(
        report.lost.is_empty(),
        "{} acknowledged events never reached Kafka: {report:?}",
        report.lost.len()
    );
    assert!(
        report.accepting_at_end,
        "the relay does not accept again by itself: {report:?}"
    );
    match ack {
        AckMode::Spool => assert!(
            report.refused.is_empty(),
            "a spool source refused while Kafka was in trouble: {report:?}"
        ),
        _ => assert!(
            report.refused.keys().all(|(status, _)| *status == 503)
                && report.refused_without_retry_after == 0,
            "a broker source refuses with 503 and Retry-After only: {report:?}"
        ),
    }
    assert!(
        report.log_problems.len() <= MAX_LOG_PROBLEMS,
        "the relay logged {} warnings and errors for one fault (at most {MAX_LOG_PROBLEMS}):\n{log}",
        report.log_problems.len()
    );
    report
}

/// What one fault may cost in warnings and errors: what happened, not a line per event.
const MAX_LOG_PROBLEMS: usize = 40;

/// Sleeps while the stream runs through the fault.
fn outage(duration: Duration) {
    std::thread::sleep(duration);
}

fn kill_leader_then_restart(cluster: &mut Cluster, topic: &str) {
    let leader = cluster.leader_of(topic);
    cluster.brokers[leader].kill();
    outage(Duration::from_secs(8));
    cluster.brokers[leader].restart();
}

fn rolling_restart(cluster: &mut Cluster, topic: &str) {
    for broker in 0..cluster.brokers.len() {
        cluster.brokers[broker].terminate();
        cluster.brokers[broker].restart();
        cluster.wait_in_sync(Some(topic), REPLICAS);
    }
}

fn two_of_three_down(cluster: &mut Cluster, topic: &str) {
    let leader = cluster.leader_of(topic);
    let others: Vec<usize> = (0..cluster.brokers.len())
        .filter(|b| *b != leader)
        .collect();
    for broker in &others {
        cluster.brokers[*broker].kill();
    }
    // The controller drops them from the ISR once their sessions expire: from then on the
    // leader answers NOT_ENOUGH_REPLICAS.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.in_sync(topic) >= MIN_IN_SYNC {
        assert!(
            Instant::now() < deadline,
            "the ISR of {topic} did not shrink"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    outage(Duration::from_secs(5));
    for broker in others {
        cluster.brokers[broker].restart();
    }
}

/// Longer than the relay's `message.timeout.ms` (below) and than the broker's session timeout
/// (9 s: the controller fences it and moves its leadership).
const FROZEN: Duration = Duration::from_secs(12);
const SHORT_MESSAGE_TIMEOUT: &[(&str, &str)] = &[("message.timeout.ms", "5000")];

fn freeze_leader(cluster: &mut Cluster, topic: &str) {
    let leader = cluster.leader_of(topic);
    cluster.brokers[leader].pause();
    outage(FROZEN);
    cluster.brokers[leader].resume();
}

fn kill_active_controller(cluster: &mut Cluster, _topic: &str) {
    let active = cluster.active_controller(None);
    cluster.controllers[active].kill();
    // Another one is elected (or the test fails with what the quorum said).
    cluster.active_controller(Some(active));
    outage(Duration::from_secs(3));
    cluster.controllers[active].restart();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_loses_nothing_when_the_leader_is_killed_and_restarted() {
    survive(
        "leader kill -9",
        AckMode::Spool,
        &[],
        kill_leader_then_restart,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_loses_nothing_when_the_leader_is_killed_and_restarted() {
    survive(
        "leader kill -9",
        AckMode::Broker,
        &[],
        kill_leader_then_restart,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_loses_nothing_in_a_rolling_restart() {
    survive("rolling restart", AckMode::Spool, &[], rolling_restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_loses_nothing_in_a_rolling_restart() {
    survive("rolling restart", AckMode::Broker, &[], rolling_restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_keeps_accepting_with_two_of_three_brokers_down() {
    survive("two of three down", AckMode::Spool, &[], two_of_three_down).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_answers_503_with_two_of_three_brokers_down() {
    let report = survive("two of three down", AckMode::Broker, &[], two_of_three_down).await;
    assert!(
        report
            .refused
            .contains_key(&(503, "kafka_unavailable".to_owned())),
        "without enough in-sync replicas a broker source cannot acknowledge: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_loses_nothing_when_the_leader_freezes_past_the_message_timeout() {
    survive(
        "leader frozen 12 s",
        AckMode::Spool,
        SHORT_MESSAGE_TIMEOUT,
        freeze_leader,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_loses_nothing_when_the_leader_freezes_past_the_message_timeout() {
    survive(
        "leader frozen 12 s",
        AckMode::Broker,
        SHORT_MESSAGE_TIMEOUT,
        freeze_leader,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_loses_nothing_when_the_active_controller_is_killed() {
    survive(
        "active controller kill -9",
        AckMode::Spool,
        &[],
        kill_active_controller,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_loses_nothing_when_the_active_controller_is_killed() {
    survive(
        "active controller kill -9",
        AckMode::Broker,
        &[],
        kill_active_controller,
    )
    .await;
}
