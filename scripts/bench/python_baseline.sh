#!/usr/bin/env bash
# Benchmark baseline: onboards N users sequentially with the official python client against the
# Clarifai simulator (see python_baseline.py).
#
# Usage: python_baseline.sh N LATENCY_MS [RATE_LIMIT]   (RATE_LIMIT per second, default 15; 0 = off)
#
# Creates/reuses the fidelity virtualenv (FIDELITY_VENV, default /var/tmp/prov-fidelity-venv),
# uses the simulator binary SIM_BIN or else builds -p clarifai-sim into CARGO_TARGET_DIR, starts
# it with --latency-ms LATENCY_MS and the default rate limit (15/s), runs the python loop and
# stops the simulator. The last stdout line is the script's JSON result; everything else
# (build, pip, errors) goes to stderr, and any failure exits non-zero.
set -euo pipefail

die() {
    echo "python_baseline: $*" >&2
    exit 1
}

[ "$#" -eq 2 ] || [ "$#" -eq 3 ] || { echo "usage: python_baseline.sh N LATENCY_MS [RATE_LIMIT]" >&2; exit 2; }
n="$1"
latency_ms="$2"
rate_limit="${3:-15}"
[[ "$rate_limit" =~ ^[0-9]+$ ]] || die "RATE_LIMIT must be a non-negative integer, got '$rate_limit'"
[[ "$n" =~ ^[0-9]+$ ]] || die "N must be a non-negative integer, got '$n'"
[[ "$latency_ms" =~ ^[0-9]+$ ]] || die "LATENCY_MS must be a non-negative integer, got '$latency_ms'"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${FIDELITY_VENV:-/var/tmp/prov-fidelity-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/prov-target}"
python="${PYTHON:-python3}"
user="bench-user"
pat="bench-pat-123"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv" >&2 || die "could not create the virtualenv $venv"
fi
if ! "$venv/bin/python" -c "import clarifai_grpc, requests" 2>/dev/null; then
    # The JSON channel imports requests, which clarifai-grpc does not declare.
    "$venv/bin/pip" install --quiet clarifai-grpc requests >&2 \
        || die "pip install of clarifai-grpc and requests failed"
fi

if [ -n "${SIM_BIN:-}" ]; then
    bin="$SIM_BIN"
else
    (cd "$repo" && cargo build --quiet -p clarifai-sim) >&2 || die "cargo build -p clarifai-sim failed"
    bin="$CARGO_TARGET_DIR/debug/clarifai-sim"
fi
[ -x "$bin" ] || die "simulator binary not found or not executable: $bin"

out="$(mktemp)"
log="$(mktemp)"
"$bin" --port 0 --account "$user:$pat" --latency-ms "$latency_ms" --rate-limit "$rate_limit" >"$out" 2>"$log" &
sim_pid=$!
cleanup() {
    kill "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
    rm -f "$out" "$log"
}
trap cleanup EXIT

url=""
for _ in $(seq 1 100); do
    url="$(head -n 1 "$out" 2>/dev/null || true)"
    [ -n "$url" ] && break
    if ! kill -0 "$sim_pid" 2>/dev/null; then
        cat "$log" >&2
        die "the simulator exited before printing its URL"
    fi
    sleep 0.1
done
[ -n "$url" ] || die "no URL from the simulator after 10 s"

result="$("$venv/bin/python" "$here/python_baseline.py" "$url" "$user" "$pat" "$n")" \
    || die "python_baseline.py failed (see above)"
line="$(printf '%s\n' "$result" | tail -n 1)"
[ -n "$line" ] || die "python_baseline.py printed no result"
printf '%s\n' "$line"
