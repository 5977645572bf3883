#!/usr/bin/env bash
# The project's whole test suite: the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "missing the $component component: rustup component add $component" >&2
    exit 1
  fi
done

echo "== browser for the dashboard test: Debian's chromium and chromium-driver"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium and chromedriver are missing and there is no apt-get to install them" >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    chromium chromium-driver >/dev/null
fi
# The dashboard's browser test fails, instead of skipping, when the browser is missing.
export SPILLWAY_REQUIRE_BROWSER=1

echo "== format"
cargo fmt --all -- --check

echo "== clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
cargo clippy -p spillway --no-default-features --locked -- -D warnings

echo "== HAProxy for the cluster test (scripts/cluster.py --quick), installed only when missing"
if ! command -v haproxy >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends haproxy >/dev/null ||
      { apt-get update >/dev/null && apt-get install -y --no-install-recommends haproxy >/dev/null; }
  else
    echo "haproxy is missing and this is not root with apt-get: the cluster test will skip"
  fi
fi

echo "== tests: unit, integration, property and doc tests"
cargo test --workspace --all-features --locked

echo "== loom models: queue admission and close, job/handle hand-off, worker park and retire"
RUSTFLAGS="--cfg spillway_loom" CARGO_TARGET_DIR=target/loom \
  cargo test -p spillway --lib --release --locked loom_

echo "== OpenMetrics exposition of two pools, read by the reference parser (Python prometheus_client)"
python3 -m pip install --quiet --disable-pip-version-check prometheus-client
cargo run --quiet --locked -p spillway --example openmetrics | python3 scripts/check_openmetrics.py

echo "== fuzz smoke run: every target for 10 s (skipped, with a message, without nightly or cargo-fuzz)"
bash scripts/fuzz.sh 10
