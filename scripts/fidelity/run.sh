#!/usr/bin/env bash
# Fidelity check of crates/clarifai-sim against the official python client (clarifai-grpc).
# Creates/reuses a virtualenv, builds and starts the simulator, runs fidelity.py, stops the sim.
# Exits non-zero on failure; the last line is "fidelity: N passed, M failed".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${FIDELITY_VENV:-/var/tmp/prov-fidelity-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/prov-target}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import clarifai_grpc, requests" 2>/dev/null; then
    # The JSON channel imports requests, which clarifai-grpc does not declare.
    "$venv/bin/pip" install --quiet clarifai-grpc requests
fi

(cd "$repo" && cargo build --quiet -p clarifai-sim)
bin="$CARGO_TARGET_DIR/debug/clarifai-sim"

out="$(mktemp)"
log="$(mktemp)"
"$bin" --port 0 --account fid-user:fid-pat-123 >"$out" 2>"$log" &
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
        echo "fidelity: 0 passed, 1 failed (simulator did not start)"
        exit 1
    fi
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "fidelity: 0 passed, 1 failed (no URL from the simulator)"
    exit 1
fi

"$venv/bin/python" "$here/fidelity.py" "$url"
