//! A sender that never stops (distinct TagMango events from a few connections, answers kept, no
//! resend: TagMango does not retry), a reader that follows the topic by `ce_id`, and the report
//! that compares the two.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookrelay::tail::{StartAt, Tail};

/// TagMango waits 30 s for an answer.
const SENDER_TIMEOUT: Duration = Duration::from_secs(30);

/// One request of the stream and its answer.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub sent: Instant,
    pub answered: Instant,
    /// 0: no answer (connection error or the sender's timeout).
    pub status: u16,
    pub code: String,
    pub retry_after: bool,
    /// The event id, when the answer was 200.
    pub id: Option<String>,
}

pub struct Stream {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

impl Stream {
    /// Posts distinct `course.completed.50` events to `url` from `connections` senders, each
    /// pausing `pause` between requests, until [`Stream::stop`]. The first event is posted
    /// before this returns and must be accepted (the topic exists from then on).
    pub async fn start(url: String, connections: usize, pause: Duration) -> Stream {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let run = RUN.fetch_add(1, Ordering::Relaxed);
        let client = reqwest::Client::builder()
            .timeout(SENDER_TIMEOUT)
            .build()
            .expect("HTTP client");
        let counter = Arc::new(AtomicU64::new(0));
        let first = post(&client, &url, run, &counter).await;
        assert_eq!(first.status, 200, "the stream's first event: {first:?}");
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for worker in 0..connections {
            let (client, url, counter, stop) =
                (client.clone(), url.clone(), counter.clone(), stop.clone());
            let mut outcomes = if worker == 0 {
                vec![first.clone()]
            } else {
                Vec::new()
            };
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    outcomes.push(post(&client, &url, run, &counter).await);
                    tokio::time::sleep(pause).await;
                }
                outcomes
            }));
        }
        Stream { stop, workers }
    }

    /// Stops sending; every request's outcome, in the order they were answered.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut outcomes = Vec::new();
        for worker in self.workers {
            outcomes.extend(worker.await.expect("sender task"));
        }
        outcomes.sort_by_key(|outcome| outcome.answered);
        outcomes
    }
}

async fn post(client: &reqwest::Client, url: &str, run: u64, counter: &AtomicU64) -> Outcome {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    let body = format!(
        "{{\"email\":\"r{run}s{n}@example.com\",\"courseId\":\"c{n}\",\"lastProgressOn\":\"2023-11-20T18:30Z\"}}"
    );
    let sent = Instant::now();
    let answer = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let (status, retry_after, body) = match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, retry_after, body)
        }
        Err(error) => (0, false, serde_json::json!({ "code": error.to_string() })),
    };
    Outcome {
        sent,
        answered: Instant::now(),
        status,
        code: body["code"].as_str().unwrap_or_default().to_owned(),
        retry_after,
        id: (status == 200)
            .then(|| body["id"].as_str().map(str::to_owned))
            .flatten(),
    }
}

/// When each `ce_id` was first read from the topic, and how many times.
type Seen = HashMap<String, (Instant, usize)>;

/// A consumer following the topic from its beginning, as an analytics pipeline would.
pub struct Reader {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Reader {
    pub fn start(bootstrap: &str, topic: &str) -> Reader {
        let tail = Tail::open(
            bootstrap,
            std::iter::empty(),
            topic,
            StartAt::Beginning,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        let seen = Arc::new(Mutex::new(Seen::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (seen, stop) = (seen.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    match tail.next(Duration::from_millis(200)) {
                        Ok(Some(record)) => {
                            let id = record.header("ce_id").unwrap_or_default().to_owned();
                            let mut seen = seen.lock().unwrap();
                            seen.entry(id).or_insert((Instant::now(), 0)).1 += 1;
                        }
                        Ok(None) => {}
                        // Kept reading: librdkafka reconnects by itself; a real error shows
                        // as events not read back.
                        Err(_) => std::thread::sleep(Duration::from_millis(200)),
                    }
                }
            }
        });
        Reader { seen, stop, thread }
    }

    /// Waits until every id of `ids` was read, or `timeout`.
    pub async fn wait_for(&self, ids: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let missing = {
                let seen = self.seen.lock().unwrap();
                ids.iter().any(|id| !seen.contains_key(id))
            };
            if !missing {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops reading; what was read.
    pub fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("reader thread");
        Arc::try_unwrap(self.seen)
            .expect("reader stopped")
            .into_inner()
            .unwrap()
    }
}

/// What a sender and a consumer saw of one fault.
#[derive(Debug)]
pub struct Report {
    pub name: String,
    pub sent: usize,
    pub acknowledged: usize,
    /// Acknowledged ids never read back.
    pub lost: Vec<String>,
    /// Records read more than once (extra copies).
    pub copies: usize,
    /// Refused answers by status and code.
    pub refused: BTreeMap<(u16, String), usize>,
    /// Refusals without a Retry-After header.
    pub refused_without_retry_after: usize,
    /// The longest time during which every answer a sender got was a refusal.
    pub longest_refusal: Duration,
    /// From the fault's end until every event acknowledged before it was readable.
    pub catch_up: Duration,
    /// The longest an acknowledged event waited between its 200 and being readable.
    pub longest_delay: Duration,
    /// Whether the stream's last answers (after the fault healed) were 200.
    pub accepting_at_end: bool,
    /// Lines the relay logged from start to exit, all levels.
    pub log_lines: usize,
    /// Of those, the warnings and errors about Kafka: the request log (one line per request,
    /// refused or not, whatever the cause) is left out; its volume is the request log's setting.
    pub log_problems: Vec<String>,
}

impl Report {
    pub fn new(
        name: &str,
        outcomes: &[Outcome],
        seen: &Seen,
        healed: Instant,
        log: &str,
    ) -> Report {
        let acknowledged: Vec<&Outcome> = outcomes.iter().filter(|o| o.id.is_some()).collect();
        let id = |outcome: &Outcome| outcome.id.clone().unwrap_or_default();
        let lost = acknowledged
            .iter()
            .map(|outcome| id(outcome))
            .filter(|id| !seen.contains_key(id))
            .collect();
        let mut refused = BTreeMap::new();
        for outcome in outcomes.iter().filter(|o| o.status != 200) {
            *refused
                .entry((outcome.status, outcome.code.clone()))
                .or_insert(0) += 1;
        }
        let mut longest_refusal = Duration::ZERO;
        let mut stretch_start: Option<Instant> = None;
        for outcome in outcomes {
            if outcome.status == 200 {
                stretch_start = None;
            } else {
                let start = *stretch_start.get_or_insert(outcome.sent);
                longest_refusal = longest_refusal.max(outcome.answered - start);
            }
        }
        let seen_at = |outcome: &Outcome| seen.get(&id(outcome)).map(|(at, _)| *at);
        let catch_up = acknowledged
            .iter()
            .filter(|outcome| outcome.answered <= healed)
            .filter_map(|outcome| seen_at(outcome))
            .map(|at| at.saturating_duration_since(healed))
            .max()
            .unwrap_or_default();
        let longest_delay = acknowledged
            .iter()
            .filter_map(|outcome| {
                Some(seen_at(outcome)?.saturating_duration_since(outcome.answered))
            })
            .max()
            .unwrap_or_default();
        let tail = outcomes.len().saturating_sub(5);
        Report {
            name: name.to_owned(),
            sent: outcomes.len(),
            acknowledged: acknowledged.len(),
            lost,
            copies: seen.values().map(|(_, count)| count - 1).sum(),
            refused,
            refused_without_retry_after: outcomes
                .iter()
                .filter(|o| o.status != 200 && !o.retry_after)
                .count(),
            longest_refusal,
            catch_up,
            longest_delay,
            accepting_at_end: outcomes.len() > 5
                && outcomes[tail..].iter().all(|o| o.status == 200),
            log_lines: log.lines().count(),
            log_problems: log
                .lines()
                .filter(|line| line.contains("WARN") || line.contains("ERROR"))
                .filter(|line| !line.contains("hookrelay::ingress: refused"))
                .map(str::to_owned)
                .collect(),
        }
    }

    /// One line per fault in `target/tmp/cluster-faults.txt` (and on stderr), for the docs.
    pub fn record(&self) {
        let refused: Vec<String> = self
            .refused
            .iter()
            .map(|((status, code), count)| format!("{count}×{status} {code}"))
            .collect();
        let line = format!(
            "{}: sent {}, acknowledged {}, lost {}, copies {}, refused [{}], longest refusal {:.1?}, catch-up {:.1?}, longest delay {:.1?}, log lines {} ({} warnings or errors)",
            self.name,
            self.sent,
            self.acknowledged,
            self.lost.len(),
            self.copies,
            refused.join(", "),
            self.longest_refusal,
            self.catch_up,
            self.longest_delay,
            self.log_lines,
            self.log_problems.len(),
        );
        eprintln!("{line}");
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-faults.txt");
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
            for problem in &self.log_problems {
                let _ = writeln!(
                    file,
                    "    {}",
                    problem.chars().take(400).collect::<String>()
                );
            }
        }
    }
}
