# Shared by scripts/dev, scripts/test and scripts/bench: install what is missing.
# shellcheck shell=bash

# Apache Kafka, the broker of the tests, scripts/dev and scripts/bench: the version
# docker-compose.yml runs (apache/kafka:$KAFKA_VERSION; tests/api/config_docs.rs checks they agree).
KAFKA_VERSION=4.4.0

# Puts cargo's bin directory on PATH (rustup installs there; so does `cargo install`).
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

require_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed. Install Rust from https://rustup.rs and run this again." >&2
    exit 1
  fi
}

# The major version of the `java` on PATH (0 when there is none).
java_major() {
  command -v java >/dev/null 2>&1 || { echo 0; return; }
  java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ { print int($2) }'
}

# Apache Kafka's jars (broker and admin tools, scripts/kafka/pom.xml), resolved once with Maven
# from Maven Central into a cache outside the work tree ($KAFKA_CACHE, default
# ~/.cache/hookrelay/kafka-$KAFKA_VERSION); later runs reuse it. Installs a Java 17+ runtime and
# Maven from Debian when missing. Exports KAFKA_LIBS, the directory of the jars.
ensure_kafka() {
  local root cache
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  cache=${KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hookrelay/kafka-$KAFKA_VERSION}
  if [ "$(java_major)" -lt 17 ]; then
    ensure_debian_package java openjdk-17-jre-headless force
  fi
  if [ ! -f "$cache/resolved" ]; then
    ensure_debian_package mvn maven
    echo "==> resolving Apache Kafka $KAFKA_VERSION from Maven Central into $cache (once, about 45 MB)"
    rm -rf "$cache.partial"
    mvn -q -B -f "$root/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$cache.partial/libs" >&2
    touch "$cache.partial/resolved"
    rm -rf "$cache"
    mv "$cache.partial" "$cache"
  fi
  export KAFKA_LIBS="$cache/libs" KAFKA_VERSION
}

# Waits until something accepts TCP connections on 127.0.0.1:$1.
wait_for_port() {
  local port=$1 tries=${2:-300}
  for _ in $(seq "$tries"); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "error: nothing listens on 127.0.0.1:$port" >&2
  return 1
}

# Waits until the Kafka node of scripts/kafka-broker in directory $1 serves (its log says it
# started: it joined the cluster and is not fenced), at most $2 seconds (default 120).
wait_for_kafka() {
  local dir=$1 seconds=${2:-120}
  for _ in $(seq $((seconds * 10))); do
    if grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "error: Apache Kafka in $dir did not start within $seconds s; its log:" >&2
  tail -20 "$dir/server.log" >&2 2>/dev/null || true
  return 1
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Installs Debian package $2 when command $1 is missing (always, when $3 is "force").
ensure_debian_package() {
  local command=$1 package=$2
  if [ "${3:-}" != force ] && command -v "$command" >/dev/null 2>&1; then
    return 0
  fi
  echo "==> installing $command (Debian package $package)"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$package" >/dev/null
}

# promtool (Debian's prometheus package) checks the metrics scrape and the alert rules in tests.
ensure_promtool() {
  ensure_debian_package promtool prometheus
}

# The senders' own libraries (Python and Node), pinned in tests/interop/, installed into
# target/interop/ (outside the source tree) and reinstalled when the pins change. The interop
# test (tests/api/interop.rs) runs tests/interop/run.py with them.
ensure_interop() {
  local root dir stamp wanted
  root=$(pwd)
  dir="$root/target/interop"
  mkdir -p "$dir/js"
  command -v node >/dev/null 2>&1 || { echo "error: node (20 or later) is needed for the interop test: install Node.js" >&2; exit 1; }
  wanted=$(cat tests/interop/requirements.txt tests/interop/package.json tests/interop/package-lock.json | sha256sum | cut -d' ' -f1)
  stamp="$dir/installed"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "==> installing the senders' libraries for the interop test (tests/interop/)"
    [ -x "$dir/venv/bin/python" ] || python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
    cp tests/interop/package.json tests/interop/package-lock.json "$dir/js/"
    (cd "$dir/js" && npm ci --silent --no-audit --no-fund)
    echo "$wanted" > "$stamp"
  fi
  export INTEROP_PYTHON="$dir/venv/bin/python"
  export INTEROP_NODE_DIR="$dir/js"
}

# wrk (Debian package) measures peak throughput in scripts/bench with far less CPU than oha.
ensure_wrk() {
  ensure_debian_package wrk wrk
}
