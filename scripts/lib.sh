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

# promtool (Debian's prometheus package) checks the metrics scrape and the alert rules in tests.
ensure_promtool() {
  if command -v promtool >/dev/null 2>&1; then
    return 0
  fi
  echo "==> installing promtool (Debian package prometheus)"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prometheus >/dev/null
}
