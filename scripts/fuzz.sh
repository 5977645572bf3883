#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time each, with cargo fuzz
# (libFuzzer, nightly Rust). Usage: scripts/fuzz.sh [seconds per target, default 60] [target...]
# A crash stops the script non-zero; its input is in fuzz/artifacts/<target>/ (replay it with
# `cargo +nightly fuzz run <target> <file>`, then make it a regression test).
# Without nightly or cargo-fuzz it says so and exits 0: the stable suite does not need them.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped, no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: skipped, cargo-fuzz is not installed (cargo install cargo-fuzz)"
  exit 0
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O
mkdir -p fuzz/logs
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  echo "== fuzz $target for ${seconds}s"
  log="fuzz/logs/$target.log"
  # -rss_limit_mb bounds a leak; -max_len keeps inputs to command-line sizes.
  status=0
  cargo +nightly fuzz run -O "$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)|cov: .*ft:" "$log" |
    grep -vE "^#[0-9]+\s+(NEW|REDUCE|pulse)" | tail -4 || true
  if [ "$status" -ne 0 ]; then
    grep -E "panicked|SUMMARY|ERROR" "$log" | head -5 >&2 || true
    echo "fuzz: $target crashed (log $log); the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
echo "fuzz: every target ran ${seconds}s without a crash"
