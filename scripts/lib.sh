# Shared by scripts/dev, scripts/test and scripts/bench: install what is missing.
# shellcheck shell=bash

TANSU_VERSION=0.6.0

# Puts cargo's bin directory on PATH (rustup installs there; so does `cargo install`).
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

require_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed. Install Rust from https://rustup.rs and run this again." >&2
    exit 1
  fi
}

# The tansu Kafka-protocol broker used by the local run and the tests.
ensure_tansu() {
  if command -v tansu >/dev/null 2>&1 && tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    TANSU_BIN=$(command -v tansu)
  else
    echo "==> installing the tansu broker $TANSU_VERSION (the first run compiles it: about 10 minutes)"
    cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore
    TANSU_BIN="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
  fi
  export TANSU_BIN
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

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Installs Debian package $2 when command $1 is missing.
ensure_debian_package() {
  local command=$1 package=$2
  if command -v "$command" >/dev/null 2>&1; then
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
