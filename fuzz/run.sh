#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), keeping what it learns in
# fuzz/corpus/<target> (not committed) and starting from fuzz/seeds/<target> (committed).
# A crash stops the run and leaves the input in fuzz/artifacts/<target>/; make it a
# regression test next to the code it broke, then fix the code.
#
# Needs a nightly toolchain and cargo-fuzz (libFuzzer); installs both if missing.
#   bash fuzz/run.sh            # 60 s per target
#   bash fuzz/run.sh 20         # a smoke run, as CI does
#   bash fuzz/run.sh 600 ip_rules   # one target for longer
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# One build for all targets, so the time below is fuzzing, not compiling.
cargo +nightly fuzz build

for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "seeds/$target"
    echo "== fuzz $target for ${seconds}s"
    mkdir -p logs
    set +e
    cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"logs/$target.log" 2>&1
    status=$?
    set -e
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "logs/$target.log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "logs/$target.log" >&2
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "== fuzzing: no crash in ${#targets[@]} targets, ${seconds}s each"
