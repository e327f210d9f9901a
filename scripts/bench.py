"""The benchmark behind scripts/bench (run that, not this: it installs and builds first).

After the servers, a backlog phase (--backlog N, default 500 000, 0 skips it): the broker is
paused (SIGSTOP) while N records are spooled, then resumed; it reports how fast the forwarder
empties the spool against memory mode's peak, and the latency of live traffic at half the spool's
peak meanwhile. Then a recovery phase (--recovery-mib N, default 1024, 0 skips it): a spool of N MiB
of TagMango records is written (examples/spool_fill, which also times reopening it warm and with
the page cache dropped), the relay is started on it and drains it into Kafka: its own recovery time
(the `spool opened` log line), the drain rate and its peak RSS while it holds the backlog.

For the bare server and the relay in each ack mode it measures, in one run on this machine:
phase 1, the maximum throughput with keep-alive connections for a fixed duration (requests/s,
latency quantiles, errors, the server's CPU seconds per 1 000 requests and peak RSS from /proc);
phase 2, latency at a constant rate of 50 % of that maximum, corrected for coordinated omission
(oha --latency-correction). For the relay it then checks that every request answered 200 is in
Kafka (delivered = accepted), by the topic's offsets.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# RELAY_BIN compares another build (an A/B run of two commits).
RELAY = os.environ.get("RELAY_BIN", os.path.join(ROOT, "target/release/hookrelay"))
BARE = os.path.join(ROOT, "target/release/examples/bare_ingress")
FILL = os.path.join(ROOT, "target/release/examples/spool_fill")
SAMPLE = os.path.join(ROOT, "samples/tagmango/course.completed.50.json")
CONFIG = os.path.join(ROOT, "config/hookrelay.toml")
TOKEN = "bench-token"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def wait_kafka(broker_dir, broker, timeout=120):
    """Waits until the node of scripts/kafka-broker in `broker_dir` says it started."""
    deadline = time.time() + timeout
    log = os.path.join(broker_dir, "server.log")
    while time.time() < deadline:
        if broker.poll() is not None:
            raise SystemExit(f"Apache Kafka exited ({broker.returncode}); see {log}")
        if os.path.exists(log) and "Kafka Server started" in open(log).read():
            return
        time.sleep(0.1)
    raise SystemExit(f"Apache Kafka did not start within {timeout} s; see {log}")


# Set by scripts/bench (ensure_kafka in scripts/lib.sh).
KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "(version unknown)")


def read_stat(path):
    """The command name and the user + system CPU seconds of a /proc stat file."""
    with open(path) as f:
        stat = f.read()
    fields = stat.rsplit(")", 1)[1].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], (int(fields[11]) + int(fields[12])) / TICKS


def cpu_seconds(pid):
    """User + system CPU time of a process and its threads, from /proc."""
    return read_stat(f"/proc/{pid}/stat")[1]


# Thread names of the relay, grouped the way the CPU breakdown reports them.
THREAD_GROUPS = (
    ("actix-rt", "HTTP worker"),
    ("spool-writer", "spool writer"),
    ("spool-forwarder", "forwarder"),
    ("rdk:", "librdkafka"),
    ("producer poll", "delivery reports"),
)


def thread_cpu_seconds(pid):
    """CPU seconds (user + system) of each group of THREAD_GROUPS, and of the rest ("other")."""
    groups = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name, seconds = read_stat(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue  # the thread ended (ENOENT before the open, ESRCH after it)
        group = next((label for prefix, label in THREAD_GROUPS if name.startswith(prefix)), "other")
        groups[group] = groups.get(group, 0) + seconds
    return groups


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def oha(url, duration, connections, rate=None):
    command = [
        "oha", "--no-tui", "--output-format", "json", "-z", f"{duration}s",
        "-c", str(connections), "-m", "POST",
        "-H", "content-type: application/json", "-D", SAMPLE, "--insecure",
    ]
    if rate:
        command += ["-q", str(int(rate)), "--latency-correction"]
    result = subprocess.run(command + [url], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    statuses = {int(k): v for k, v in report.get("statusCodeDistribution", {}).items()}
    percentiles = report.get("latencyPercentiles", {})
    summary = report["summary"]
    total = sum(statuses.values())
    return {
        "rps": summary["requestsPerSec"],
        "ok": statuses.get(200, 0),
        "total": total,
        # Requests cut off by the end of the phase are not errors of the server.
        "errors": total - statuses.get(200, 0) + sum(
            count for error, count in report.get("errorDistribution", {}).items()
            if "deadline" not in error
        ),
        "p50": percentiles.get("p50", 0) * 1000,
        "p99": percentiles.get("p99", 0) * 1000,
        "p999": percentiles.get("p99.9", 0) * 1000,
    }


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = f:read("*a")
f:close()
"""


def wrk(url, duration, connections):
    """Peak throughput with wrk: one thread, much lighter than oha, so that on a small machine
    the load generator's own CPU hides less of the server's capacity."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        result = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", script.name, url],
            capture_output=True, text=True, check=True, env=dict(os.environ, BENCH_BODY=SAMPLE),
        )
    finally:
        os.unlink(script.name)
    rps, total, non_2xx = 0.0, 0, 0
    for line in result.stdout.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            rps = float(words[1])
        elif "requests in" in line:
            total = int(words[0])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            non_2xx = int(words[-1])
    return {"rps": rps, "total": total, "errors": non_2xx}


def stop(process):
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def start_relay(env, workdir):
    """`hookrelay serve` with the shipped configuration and `env`, its log in `workdir`."""
    log = open(os.path.join(workdir, "relay.log"), "w")
    return subprocess.Popen([RELAY, "serve", "--config", CONFIG], env=env, stdout=log, stderr=log)


def relay_env(mode, brokers, port, admin_port, spool_dir, prefix):
    env = dict(os.environ)
    env.update({
        "TAGMANGO_TOKEN": TOKEN,
        "HOOKRELAY__KAFKA__BROKERS": brokers,
        "HOOKRELAY__KAFKA__CREATE_TOPICS": "true",
        "HOOKRELAY__KAFKA__TOPIC_PARTITIONS": "3",
        "HOOKRELAY__SERVER__LISTEN": f"127.0.0.1:{port}",
        "HOOKRELAY__SERVER__ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
        "HOOKRELAY__SERVER__WORKERS": "1",
        "HOOKRELAY__SERVER__SHUTDOWN_TIMEOUT_MS": "60000",
        "HOOKRELAY__DELIVERY__ACK": mode,
        "HOOKRELAY__DELIVERY__SPOOL_DIR": spool_dir,
        "HOOKRELAY__DELIVERY__BROKER_TIMEOUT_MS": "10000",
        "HOOKRELAY__TELEMETRY__LEVEL": "warn",
        "HOOKRELAY__SOURCES__TAGMANGO__TOPIC": prefix + ".{source}.{event}",
    })
    # Every request of a run is the same sample: without this the idempotency window would answer
    # all but the first "duplicate". The benchmark measures the publishing path.
    env["HOOKRELAY__SOURCES__TAGMANGO__IDEMPOTENCY__FIELDS"] = '["body"]'
    env["HOOKRELAY__SOURCES__TAGMANGO__IDEMPOTENCY__TTL_SECS"] = "0"
    return env


def topic_count(env, topic):
    result = subprocess.run(
        [RELAY, "tail", "--config", CONFIG, "--topic", topic, "--count"],
        capture_output=True, text=True, env=env, check=True,
    )
    return int(result.stdout.strip())


def scrape(admin_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as response:
        return response.read().decode().splitlines()


def metric(admin_port, name):
    for line in scrape(admin_port):
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


COMMITS = "hookrelay_spool_fsync_duration_seconds_count"


def slow_fsyncs(admin_port):
    """Group commits (write + fdatasync) that took more than 5 ms, and more than 25 ms, so far."""
    buckets = {}
    for line in scrape(admin_port):
        if line.startswith("hookrelay_spool_fsync_duration_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[bound] = float(line.split()[1])
    total = buckets.get("+Inf", 0)
    return total - buckets.get("0.005", 0), total - buckets.get("0.025", 0)


def self_signed_certificate(directory):
    """A throw-away P-256 certificate for localhost (openssl), for the HTTPS rows."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-days", "1", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return cert, key


def run_target(name, args, brokers):
    port, admin_port = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix=f"hookrelay-bench-{name}-", dir=args.spool_dir)
    prefix = f"bench{int(time.time())}{name.replace('-', '')}"
    # "NAME-tls": the same server over HTTPS (a certificate made for this run).
    mode, tls = name.removesuffix("-tls"), name.endswith("-tls")
    cert_files = self_signed_certificate(workdir) if tls else ()
    if mode == "bare":
        process = subprocess.Popen([BARE, str(port), "1", *cert_files],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = None
    else:
        env = relay_env(mode, brokers, port, admin_port, os.path.join(workdir, "spool"), prefix)
        if tls:
            env["HOOKRELAY__SERVER__TLS__CERT"] = f"file:{cert_files[0]}"
            env["HOOKRELAY__SERVER__TLS__KEY"] = f"file:{cert_files[1]}"
        process = start_relay(env, workdir)
    wait_port(port)
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}/hooks/tagmango/course.completed.50?token={TOKEN}"
    connections = args.broker_connections if mode == "broker" else args.connections
    oha(url, 2, connections)  # warm-up: connections, topic metadata, page cache
    cpu_before = cpu_seconds(process.pid)
    peak = oha(url, args.duration, connections)
    cpu = cpu_seconds(process.pid) - cpu_before
    wrk_cpu_before = cpu_seconds(process.pid)
    threads_before = thread_cpu_seconds(process.pid) if env else {}
    commits_before = metric(admin_port, COMMITS) if mode == "spool" else None
    wrk_peak = wrk(url, args.duration, connections)
    wrk_cpu = cpu_seconds(process.pid) - wrk_cpu_before
    if env:
        # Where the relay's CPU goes at its peak: ms per 1 000 requests for each group of threads.
        threads_after = thread_cpu_seconds(process.pid)
        served = max(wrk_peak["total"], 1) / 1000
        breakdown = {group: (seconds - threads_before.get(group, 0)) * 1000 / served
                     for group, seconds in threads_after.items()}
    if commits_before is not None:
        commits_after = metric(admin_port, COMMITS)
        commits = commits_after - commits_before if commits_after is not None else 0
        records_per_commit = wrk_peak["total"] / commits if commits > 0 else None
    slow_before = slow_fsyncs(admin_port) if mode == "spool" else None
    steady = oha(url, 10, connections, rate=peak["rps"] * 0.5)
    rss = peak_rss_mib(process.pid)
    row = {
        "name": name, "rps": peak["rps"], "p50": peak["p50"], "p99": peak["p99"], "p999": peak["p999"],
        "errors": peak["errors"] + steady["errors"] + wrk_peak["errors"],
        "cpu_per_1k": cpu / max(peak["total"], 1) * 1000,
        "wrk_rps": wrk_peak["rps"],
        "wrk_cpu_per_1k": wrk_cpu / max(wrk_peak["total"], 1) * 1000,
        "rss": rss, "rate": peak["rps"] * 0.5,
        "steady_p50": steady["p50"], "steady_p99": steady["p99"], "steady_p999": steady["p999"],
        "delivered": "-",
    }
    if env:
        row["threads"] = breakdown
    if commits_before is not None:
        row["records_per_commit"] = records_per_commit
    if slow_before:
        after = slow_fsyncs(admin_port)
        row["slow_fsyncs"] = (after[0] - slow_before[0], after[1] - slow_before[1])
    if env:
        if mode == "spool":
            # Let the forwarder empty the spool before the relay stops.
            deadline = time.time() + 120
            while time.time() < deadline and (metric(admin_port, "hookrelay_spool_records") or 0) > 0:
                time.sleep(0.5)
        accepted = int(metric(admin_port, 'hookrelay_events_accepted_total{source="tagmango"}') or 0)
        row["exit"] = stop(process)
        delivered = topic_count(env, f"{prefix}.tagmango.course.completed.50")
        row["delivered"] = f"{delivered} in Kafka, {accepted} accepted"
        row["lossless"] = delivered >= accepted and row["exit"] == 0
    else:
        stop(process)
    shutil.rmtree(workdir, ignore_errors=True)
    return row


def oha_count(url, total, connections):
    """Posts `total` requests as fast as they are answered; returns oha's summary."""
    command = [
        "oha", "--no-tui", "--output-format", "json", "-n", str(total), "-c", str(connections),
        "-m", "POST", "-H", "content-type: application/json", "-D", SAMPLE, "--insecure", url,
    ]
    report = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    statuses = {int(k): v for k, v in report.get("statusCodeDistribution", {}).items()}
    return {"ok": statuses.get(200, 0), "total": sum(statuses.values()),
            "rps": report["summary"]["requestsPerSec"]}


def run_backlog(args, brokers, broker, live_rate):
    """The backlog phase: with the broker paused (SIGSTOP), spool `args.backlog` records; resume
    it and measure how fast the forwarder empties the spool, and the latency of live traffic at
    `live_rate` requests/s meanwhile."""
    port, admin_port = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="hookrelay-bench-backlog-", dir=args.spool_dir)
    prefix = f"bench{int(time.time())}backlog"
    env = relay_env("spool", brokers, port, admin_port, os.path.join(workdir, "spool"), prefix)
    env["HOOKRELAY__DELIVERY__SPOOL_MAX_BYTES"] = str(4 << 30)
    process = start_relay(env, workdir)
    wait_port(port)
    url = f"http://127.0.0.1:{port}/hooks/tagmango/course.completed.50?token={TOKEN}"
    oha(url, 2, args.connections)  # warm-up, and the topic's metadata while Kafka is there
    while (metric(admin_port, "hookrelay_spool_records") or 0) > 0:
        time.sleep(0.2)
    broker.send_signal(signal.SIGSTOP)
    try:
        filled = oha_count(url, args.backlog, args.connections)
        backlog = metric(admin_port, "hookrelay_spool_records") or 0
    finally:
        broker.send_signal(signal.SIGCONT)
    fsyncs_before = slow_fsyncs(admin_port)
    threads_before, broker_before = thread_cpu_seconds(process.pid), cpu_seconds(broker.pid)
    started = time.time()
    live = subprocess.Popen(
        ["oha", "--no-tui", "--output-format", "json", "-z", f"{args.duration}s", "-c", str(args.connections),
         "-q", str(int(live_rate)), "--latency-correction", "-m", "POST",
         "-H", "content-type: application/json", "-D", SAMPLE, url],
        stdout=subprocess.PIPE, text=True,
    )
    # Drained when what is left is what live traffic keeps in flight (appended, not yet acknowledged).
    settled = max(2000, live_rate / 5)
    deadline = started + 600
    while time.time() < deadline and (metric(admin_port, "hookrelay_spool_records") or 0) > settled:
        time.sleep(0.1)
    drained = max(time.time() - started, 0.001)
    # Who used the 2 cores while draining: the relay (live traffic and drain) and the broker.
    cores = {group: (seconds - threads_before.get(group, 0)) / drained
             for group, seconds in thread_cpu_seconds(process.pid).items()}
    cores["broker"] = (cpu_seconds(broker.pid) - broker_before) / drained
    fsyncs_after = slow_fsyncs(admin_port)
    live_report = json.loads(live.communicate()[0])
    rss = peak_rss_mib(process.pid)
    accepted = int(metric(admin_port, 'hookrelay_events_accepted_total{source="tagmango"}') or 0)
    exit_code = stop(process)
    delivered = topic_count(env, f"{prefix}.tagmango.course.completed.50")
    shutil.rmtree(workdir, ignore_errors=True)
    percentiles = live_report.get("latencyPercentiles", {})
    return {
        "backlog": int(backlog), "fill_rps": filled["rps"], "drain_secs": drained,
        "drain_rps": backlog / drained if drained > 0 else 0.0, "live_rate": live_rate,
        "live_p50": percentiles.get("p50", 0) * 1000, "live_p99": percentiles.get("p99", 0) * 1000,
        "rss": rss, "lossless": delivered >= accepted and exit_code == 0,
        "delivered": f"{delivered} in Kafka, {accepted} accepted",
        "slow_fsyncs": tuple(after - before for before, after in zip(fsyncs_before, fsyncs_after)),
        "cores": cores,
    }


def run_recovery(args, brokers):
    """The recovery phase: a spool of `args.recovery_mib` MiB written ahead, then the relay
    started on it: recovery time, drain rate, peak RSS."""
    port, admin_port = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="hookrelay-bench-recovery-", dir=args.spool_dir)
    spool_dir = os.path.join(workdir, "spool")
    prefix = f"bench{int(time.time())}recovery"
    topic = f"{prefix}.tagmango.course.completed.50"
    filled = json.loads(subprocess.run([FILL, spool_dir, topic, str(args.recovery_mib)],
                                       capture_output=True, text=True, check=True).stdout)
    env = relay_env("spool", brokers, port, admin_port, spool_dir, prefix)
    env["HOOKRELAY__DELIVERY__SPOOL_MAX_BYTES"] = str(4 << 30)
    env["HOOKRELAY__TELEMETRY__LEVEL"] = "info"
    env["HOOKRELAY__TELEMETRY__FORMAT"] = "json"
    started = time.time()
    process = start_relay(env, workdir)
    wait_port(port)
    listening = time.time() - started
    # The drain is timed from when the relay listens (its spool is open by then).
    deadline = time.time() + 900
    while time.time() < deadline and (metric(admin_port, "hookrelay_spool_records") or 0) > 0:
        time.sleep(0.2)
    drained = time.time() - started - listening
    rss = peak_rss_mib(process.pid)
    exit_code = stop(process)
    opened = None
    with open(os.path.join(workdir, "relay.log")) as lines:
        for line in lines:
            if '"spool opened"' in line:
                opened = json.loads(line).get("elapsed_ms")
    delivered = topic_count(env, topic)
    shutil.rmtree(workdir, ignore_errors=True)
    gib = filled["bytes"] / (1 << 30)
    return {
        "records": filled["records"], "gib": gib, "fill_rps": filled["records"] / filled["fill_seconds"],
        "warm_per_gib": filled["warm_seconds_per_gib"], "cold_per_gib": filled["cold_seconds_per_gib"],
        "relay_open_per_gib": (opened / 1000 / gib) if opened is not None else None,
        "listening_secs": listening, "drain_secs": drained, "drain_rps": filled["records"] / drained,
        "rss": rss, "lossless": delivered >= filled["records"] and exit_code == 0,
        "delivered": f"{delivered} in Kafka, {filled['records']} spooled",
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--broker-connections", type=int, default=256)
    parser.add_argument("--targets", default="bare,memory,spool,broker,bare-tls,spool-tls",
                        help="servers to load; NAME-tls is NAME over HTTPS, compared with bare-tls")
    parser.add_argument("--backlog", type=int, default=500_000,
                        help="records for the backlog phase (broker paused, then resumed); 0 skips it")
    parser.add_argument("--recovery-mib", type=int, default=1024,
                        help="MiB of spool for the recovery phase (relay started on it); 0 skips it")
    parser.add_argument("--spool-dir", default=None,
                        help="directory for the spool (default: the system's temporary directory)")
    args = parser.parse_args()

    broker_port = free_port()
    broker_dir = tempfile.mkdtemp(prefix="hookrelay-bench-kafka-")
    # scripts/kafka-broker execs the JVM: this process id is the broker's (the backlog phase
    # freezes it).
    broker = subprocess.Popen(
        ["bash", "scripts/kafka-broker", "--dir", broker_dir, "--port", str(broker_port),
         "--controller-port", str(free_port())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_kafka(broker_dir, broker)
        rows = []
        for name in args.targets.split(","):
            print(f"==> {name}", file=sys.stderr)
            rows.append(run_target(name, args, f"127.0.0.1:{broker_port}"))
        backlog = None
        if args.backlog:
            print(f"==> backlog of {args.backlog}", file=sys.stderr)
            # Live traffic at half the spool's peak (the mode it exercises), else memory mode's.
            peak = next((row for name in ("spool", "memory") for row in rows if row["name"] == name), None)
            live_rate = 0.5 * (peak["rps"] if peak else 10_000)
            backlog = run_backlog(args, f"127.0.0.1:{broker_port}", broker, live_rate)
        recovery = None
        if args.recovery_mib:
            print(f"==> recovery of {args.recovery_mib} MiB", file=sys.stderr)
            recovery = run_recovery(args, f"127.0.0.1:{broker_port}")
    finally:
        broker.kill()
        broker.wait()
        shutil.rmtree(broker_dir, ignore_errors=True)

    baselines = {row["name"]: row for row in rows if row["name"] in ("bare", "bare-tls")}
    lines = [
        f"Machine: {os.cpu_count()} cores, {os.uname().machine}; relay and bare server with 1 HTTP worker; "
        f"oha (and wrk, 1 thread), Apache Kafka {KAFKA_VERSION} (one KRaft node) and the server on the same host; {args.duration} s per load phase; "
        f"{args.connections} keep-alive connections ({args.broker_connections} for broker mode). "
        "Rows NAME-tls serve HTTPS (TLS 1.3, P-256 certificate) and their × columns compare with bare-tls.",
        "",
        "| server | requests/s | × bare | p50 ms | p99 ms | p99.9 ms | errors | CPU ms / 1k req | × bare | wrk requests/s | × bare | wrk CPU ms / 1k req | × bare | peak RSS MiB | p50 / p99 / p99.9 ms at 50 % load | delivered = accepted |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        # HTTPS rows are compared with the bare server over HTTPS, the others with plain HTTP.
        bare = baselines.get("bare-tls" if row["name"].endswith("-tls") else "bare")
        rps_ratio = f"{row['rps'] / bare['rps']:.2f}" if bare else "-"
        cpu_ratio = f"{row['cpu_per_1k'] / bare['cpu_per_1k']:.2f}" if bare and bare["cpu_per_1k"] else "-"
        wrk_ratio = f"{row['wrk_rps'] / bare['wrk_rps']:.2f}" if bare and bare["wrk_rps"] else "-"
        wrk_cpu_ratio = (f"{row['wrk_cpu_per_1k'] / bare['wrk_cpu_per_1k']:.2f}"
                         if bare and bare["wrk_cpu_per_1k"] else "-")
        lossless = "yes" if row.get("lossless", True) else "**NO**"
        lines.append(
            f"| {row['name']} | {row['rps']:.0f} | {rps_ratio} | {row['p50']:.2f} | {row['p99']:.2f} | "
            f"{row['p999']:.2f} | {row['errors']} | {row['cpu_per_1k'] * 1000:.0f} | {cpu_ratio} | "
            f"{row['wrk_rps']:.0f} | {wrk_ratio} | {row['wrk_cpu_per_1k'] * 1000:.0f} | {wrk_cpu_ratio} | "
            f"{row['rss']:.1f} | {row['steady_p50']:.2f} / {row['steady_p99']:.2f} / {row['steady_p999']:.2f} "
            f"at {row['rate']:.0f}/s | {lossless if row['delivered'] == '-' else lossless + ' (' + row['delivered'] + ')'} |"
        )
    breakdowns = [row for row in rows if "threads" in row]
    if breakdowns:
        totals = [f"{name} {row['wrk_cpu_per_1k'] * 1000:.1f}" for name, row in baselines.items()]
        lines += ["", "Where the relay's CPU goes at its peak (wrk phase), ms per 1 000 requests by thread"
                      + (f" (the bare server in all: {', '.join(totals)})" if totals else "")
                      + "; \"HTTP worker\" includes the admin listener's thread:"]
        for row in breakdowns:
            parts = [f"{group} {ms:.1f}" for group, ms in sorted(row["threads"].items(), key=lambda item: -item[1])
                     if ms >= 0.05]
            commits = ("" if "records_per_commit" not in row else
                       f"; {row['records_per_commit']:.1f} records per group commit"
                       if row["records_per_commit"] is not None else "; records per group commit: –")
            lines.append(f"- {row['name']}: {', '.join(parts)}{commits}.")
    for row in rows:
        if "slow_fsyncs" in row:
            over5, over25 = row["slow_fsyncs"]
            lines += ["", f"{row['name']}: spool group commits (write + fdatasync) slower than 5 ms during the 50 % load phase: "
                          f"{over5:.0f}, slower than 25 ms: {over25:.0f} (spool in {args.spool_dir or tempfile.gettempdir()})."]
    if backlog:
        memory = next((row for row in rows if row["name"] == "memory"), None)
        versus = (f" ({backlog['drain_rps'] / memory['rps']:.2f} × memory mode's peak)" if memory else "")
        lines += ["", f"Backlog: {backlog['backlog']} records spooled with the broker paused "
                      f"(at {backlog['fill_rps']:.0f}/s); after it resumed the spool was empty in "
                      f"{backlog['drain_secs']:.1f} s: {backlog['drain_rps']:.0f} records/s{versus}; "
                      f"live traffic at {backlog['live_rate']:.0f}/s meanwhile: p50 {backlog['live_p50']:.2f} ms, "
                      f"p99 {backlog['live_p99']:.2f} ms (group commits over 5 ms while draining: "
                      f"{backlog['slow_fsyncs'][0]:.0f}, over 25 ms: {backlog['slow_fsyncs'][1]:.0f}); "
                      f"cores busy while draining (of {os.cpu_count()}): "
                      f"{', '.join(f'{group} {cores:.2f}' for group, cores in sorted(backlog['cores'].items(), key=lambda item: -item[1]) if cores >= 0.005)}; "
                      f"peak RSS {backlog['rss']:.1f} MiB; "
                      f"{'no loss' if backlog['lossless'] else '**LOSS**'} ({backlog['delivered']})."]
    if recovery:
        cold = (f"{recovery['cold_per_gib']:.2f} s" if recovery["cold_per_gib"] is not None
                else "not measured (dropping the page cache needs root)")
        opened = (f"{recovery['relay_open_per_gib']:.2f} s" if recovery["relay_open_per_gib"] is not None
                  else "not logged")
        lines += ["", f"Recovery: a spool of {recovery['gib']:.2f} GiB ({recovery['records']} records, written at "
                      f"{recovery['fill_rps']:.0f}/s by 64 appenders) reopens in {recovery['warm_per_gib']:.2f} s per GiB "
                      f"from the page cache, {cold} per GiB cold; the relay started on it opened it in {opened} per GiB "
                      f"and listened after {recovery['listening_secs']:.2f} s; it then drained it in {recovery['drain_secs']:.1f} s "
                      f"({recovery['drain_rps']:.0f} records/s) with a peak RSS of {recovery['rss']:.1f} MiB; "
                      f"{'no loss' if recovery['lossless'] else '**LOSS**'} ({recovery['delivered']})."]
    table = "\n".join(lines)
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    with open(os.path.join(ROOT, "target/bench/results.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    if (not all(row.get("lossless", True) for row in rows) or (backlog and not backlog["lossless"])
            or (recovery and not recovery["lossless"])):
        sys.exit(1)


if __name__ == "__main__":
    main()
