#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), starting from its
# corpus in fuzz/corpus/<target> (kept in the repository; new inputs the
# run finds are added there). A crash, panic or timeout fails the run and
# leaves the input under fuzz/artifacts/<target>/.
#
# cargo-fuzz drives libFuzzer with flags the stable compiler accepts only
# under RUSTC_BOOTSTRAP=1; `-s none` builds without a sanitizer (the code
# is safe Rust: what is sought is panics, hangs and runaway allocations).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
tools="$HOME/.cache/predastore"
if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -q " 0\.13\."; then
  cargo install --locked --root "$tools" cargo-fuzz --version "^0.13"
fi
export PATH="$tools/bin:$PATH" RUSTC_BOOTSTRAP=1
for target in s3_requests xml_bodies wire_frames meta_records; do
  mkdir -p "artifacts/$target"
  log="artifacts/$target.log"
  echo "fuzzing $target for ${secs}s"
  if ! cargo fuzz run --release -s none "$target" "corpus/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target failed; the input is under fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|new_units_added)" "$log" || true
done
