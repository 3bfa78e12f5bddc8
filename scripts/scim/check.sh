#!/usr/bin/env bash
# SCIM 2.0 conformance: scim2-cli (scim2-tester) and scim-sanity (PyPI) against the real binary.
#
# Creates/reuses a virtualenv with the two tools pinned, builds `provisioner` and `clarifai-sim`,
# starts the simulator and `provisioner serve` (SQLite in a temp dir, fresh secrets, loopback
# only), creates a tenant `acme` pointing at the simulator and issues a SCIM token for it through
# the admin API, then runs
#   - `scim2 ... test`: every check (discovery and its 405s, 404s, create/get/list/replace/delete,
#     attributes/excludedAttributes, /.search, PATCH add/remove/replace on every advertised
#     attribute) must be SUCCESS (a SKIPPED or ERROR check fails the run);
#   - `scim-sanity probe --resource User` in strict mode: no FAIL and no ERROR.
# Afterwards the service must still answer /healthz and /readyz, the SCIM sync worker must have
# settled every user the tools left behind, and its log must hold no 5xx answer and no panic.
# Both servers are stopped on exit (SCIM_KEEP=1 keeps the work dir with the logs).
# The last line is "scim conformance: scim2 N checks ok, scim-sanity ok" (or what failed).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${SCIM_VENV:-/var/tmp/prov-scim-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/prov-target}"
python="${PYTHON:-python3}"
scim2_cli_version="0.6.0"
scim_sanity_version="0.7.4"
tenant="acme"

fail() {
    echo "scim conformance: FAILED ($1)"
    exit 1
}

# --- the tools, pinned --------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
installed() { "$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }
if [ "$(installed scim2-cli)" != "$scim2_cli_version" ] || [ "$(installed scim-sanity)" != "$scim_sanity_version" ]; then
    "$venv/bin/pip" install --quiet "scim2-cli==$scim2_cli_version" "scim-sanity==$scim_sanity_version"
fi

# --- build --------------------------------------------------------------------------------
(cd "$repo" && cargo build --quiet -p provisioner -p clarifai-sim)
sim_bin="$CARGO_TARGET_DIR/debug/clarifai-sim"
prov_bin="$CARGO_TARGET_DIR/debug/provisioner"

work="$(mktemp -d)"
sim_pid=""
prov_pid=""
cleanup() {
    for pid in $prov_pid $sim_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "${SCIM_KEEP:-}" ]; then
        echo "scim conformance: work dir kept at $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# --- the simulator ------------------------------------------------------------------------
upstream_user="scim-user"
upstream_pat="scim-pat-0123456789abcdef"
"$sim_bin" --port 0 --account "$upstream_user:$upstream_pat" --rate-limit 0 \
    >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
sim_url=""
for _ in $(seq 1 100); do
    sim_url="$(head -n 1 "$work/sim.out" 2>/dev/null || true)"
    [ -n "$sim_url" ] && break
    kill -0 "$sim_pid" 2>/dev/null || { cat "$work/sim.log" >&2; fail "simulator did not start"; }
    sleep 0.1
done
[ -n "$sim_url" ] || fail "no URL from the simulator"

# --- the service --------------------------------------------------------------------------
port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
scim_base="$base/scim/v2/$tenant"
export PROVISIONER_LISTEN="127.0.0.1:$port"
export PROVISIONER_METRICS_LISTEN=off
export PROVISIONER_DATABASE_URL="sqlite://$work/provisioner.db"
export PROVISIONER_MASTER_KEY="$(head -c 32 /dev/urandom | base64)"
export PROVISIONER_JWT_HS256_SECRET="$(head -c 32 /dev/urandom | base64)"
export PROVISIONER_CALLER_RATE_LIMIT=0
# Access lines (info on provisioner::access) are what the 5xx check reads.
export PROVISIONER_LOG="${PROVISIONER_LOG:-warn,provisioner::access=info}"
export PROVISIONER_LOG_FORMAT=text
export PROVISIONER_RECOVERY_INTERVAL_SECS=1
export PROVISIONER_UPSTREAM_TIMEOUT_SECS=5
export PROVISIONER_UPSTREAM_MAX_ATTEMPTS=2
unset PROVISIONER_JWT_ISSUER PROVISIONER_JWT_AUDIENCE PROVISIONER_CONFIG
# Hermetic: every upstream but the local simulator goes to a closed port. The tools talk to
# 127.0.0.1 only, which NO_PROXY exempts.
export HTTP_PROXY="http://127.0.0.1:9" HTTPS_PROXY="http://127.0.0.1:9" ALL_PROXY="http://127.0.0.1:9"
export http_proxy="$HTTP_PROXY" https_proxy="$HTTPS_PROXY" all_proxy="$ALL_PROXY"
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"

"$prov_bin" serve >"$work/provisioner.log" 2>&1 &
prov_pid=$!
ready=""
for _ in $(seq 1 200); do
    if curl -fsS -o /dev/null "$base/readyz" 2>/dev/null; then ready=1; break; fi
    kill -0 "$prov_pid" 2>/dev/null || { cat "$work/provisioner.log" >&2; fail "provisioner did not start"; }
    sleep 0.1
done
[ -n "$ready" ] || { cat "$work/provisioner.log" >&2; fail "provisioner not ready"; }

admin="$("$prov_bin" token --scope "provisioner:admin" --ttl 1h --sub scim-conformance)"

call() { # METHOD PATH [BODY] -> the body in $work/last.json; expects 2xx
    local method="$1" path="$2" body="${3:-}" code
    local args=(-sS -o "$work/last.json" -w '%{http_code}' -X "$method" "$base$path"
        -H "Authorization: Bearer $admin")
    [ -n "$body" ] && args+=(-H 'content-type: application/json' -d "$body")
    code="$(curl "${args[@]}")"
    case "$code" in
        2??) ;;
        *) cat "$work/last.json" >&2; echo >&2; fail "setup: $method $path answered $code" ;;
    esac
}
json_field() { "$venv/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/last.json" "$1"; }

# --- a tenant on the simulator and its SCIM token -------------------------------------------
call POST /v1/tenants "{\"id\":\"$tenant\",\"display_name\":\"Acme Corp\",
    \"upstream\":{\"base_url\":\"$sim_url\",\"user_id\":\"$upstream_user\",\"pat\":\"$upstream_pat\"},
    \"app_defaults\":{\"id_prefix\":\"$tenant-\",\"default_workflow\":\"Empty\",\"description\":\"Provisioned for {external_id}\"},
    \"allowed_scopes\":[\"Predict\",\"Inputs:Get\",\"Inputs:Add\",\"Concepts:Get\"],
    \"default_scope_profile\":\"standard\",\"scope_profiles\":{\"standard\":[\"Predict\",\"Inputs:Get\"]}}"
call POST "/v1/tenants/$tenant/scim/tokens" '{}'
scim_token="$(json_field token)"
case "$scim_token" in
    scim_*) ;;
    *) fail "POST /v1/tenants/$tenant/scim/tokens gave no token" ;;
esac

# --- scim2-cli (scim2-tester) ---------------------------------------------------------------
echo "== scim2 test against $scim_base"
set +e
# The header goes through SCIM_CLI_HEADERS (the same as `-h "Authorization: Bearer ..."`, but
# not on the command line).
SCIM_CLI_HEADERS="Authorization: Bearer $scim_token" \
    "$venv/bin/scim2" --url "$scim_base" test --verbose >"$work/scim2.out" 2>&1
scim2_status=$?
set -e
# Each check with its reason; the exchanged data (`--verbose`) only under the checks that did
# not succeed.
awk '
    /^[A-Z]+ / { ok = ($1 == "SUCCESS"); reason = 1; print; next }
    /^  / { if (!ok || reason) print substr($0, 1, 4000); reason = 0; next }
    { print }
' "$work/scim2.out"
scim2_ok="$(grep -c '^SUCCESS ' "$work/scim2.out" || true)"
# Any other status (COMPLIANT, ACCEPTABLE, DEVIATION, ERROR, CRITICAL, SKIPPED, ...) fails.
scim2_other="$(grep -E '^[A-Z]+ ' "$work/scim2.out" | grep -vc '^SUCCESS ' || true)"
echo "scim2: $scim2_ok SUCCESS, $scim2_other not SUCCESS, exit $scim2_status"

# --- scim-sanity (strict) -------------------------------------------------------------------
echo "== scim-sanity probe against $scim_base (strict)"
set +e
"$venv/bin/scim-sanity" probe "$scim_base" --token "$scim_token" --i-accept-side-effects \
    --resource User >"$work/sanity.out" 2>&1
sanity_status=$?
set -e
# Without the terminal's colours.
sed -e 's/\x1b\[[0-9;]*m//g' "$work/sanity.out"
sanity_passed="$(sed -e 's/\x1b\[[0-9;]*m//g' "$work/sanity.out" | grep -Eo '[0-9]+ passed' | tail -n 1 || true)"
echo "scim-sanity: ${sanity_passed:-0 passed}, exit $sanity_status"

# --- the service afterwards -------------------------------------------------------------------
survived=""
if curl -fsS -o /dev/null "$base/healthz" && curl -fsS -o /dev/null "$base/readyz"; then
    survived=1
fi
kill -0 "$prov_pid" 2>/dev/null || survived=""

# The SCIM sync worker settles every user the tools left behind (no transitional status).
settled=""
statuses=""
for _ in $(seq 1 300); do
    curl -sS -o "$work/users.json" -H "Authorization: Bearer $admin" \
        "$base/v1/tenants/$tenant/users?limit=200" || true
    statuses="$("$venv/bin/python" - "$work/users.json" <<'EOF' 2>/dev/null || true
import collections, json, sys
items = json.load(open(sys.argv[1])).get("items", [])
print(" ".join(f"{k}={v}" for k, v in sorted(collections.Counter(i["status"] for i in items).items())) or "none")
EOF
)"
    case " $statuses " in
        *" provisioning="*|*" suspending="*|*" reactivating="*|*" deprovisioning="*|*" rotating="*|"  ") ;;
        *) settled=1; break ;;
    esac
    sleep 0.1
done
echo "service: /v1 users after the tools: ${statuses:-unreadable}"

server_errors="$(grep -cE 'status=5[0-9][0-9]' "$work/provisioner.log" || true)"
panics="$(grep -c 'panicked' "$work/provisioner.log" || true)"
if [ "$server_errors" != "0" ] || [ "$panics" != "0" ]; then
    echo "service log: $server_errors 5xx answers, $panics panics:"
    grep -E 'status=5[0-9][0-9]|panicked' "$work/provisioner.log" | head -n 50
fi

# --- verdict ------------------------------------------------------------------------------
problems=()
if [ "$scim2_status" -ne 0 ] || [ "$scim2_other" != "0" ] || [ "$scim2_ok" = "0" ]; then
    problems+=("scim2 exit $scim2_status, $scim2_other of $((scim2_ok + scim2_other)) checks not SUCCESS")
fi
[ "$sanity_status" -eq 0 ] || problems+=("scim-sanity failed")
[ -n "$survived" ] || problems+=("the service did not survive")
[ -n "$settled" ] || problems+=("SCIM sync did not settle: ${statuses:-unreadable}")
case " $statuses " in *" failed="*) problems+=("SCIM users whose provisioning failed: $statuses") ;; esac
[ "$server_errors" = "0" ] || problems+=("$server_errors 5xx in the service log")
[ "$panics" = "0" ] || problems+=("$panics panics in the service log")
if [ "${#problems[@]}" -ne 0 ]; then
    fail "$(IFS=';'; echo "${problems[*]}" | sed 's/;/; /g')"
fi
echo "scim conformance: scim2 $scim2_ok checks ok, scim-sanity ok (${sanity_passed:-0 passed})"
