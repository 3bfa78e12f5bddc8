#!/usr/bin/env bash
# Browser check of the API reference (`GET /docs`), for CI.
#
# Starts `provisioner demo` on a free loopback port, renders /docs in headless Chromium, asserts
# that the rendered DOM holds the user PUT operation with its request fields, and saves a
# screenshot to docs/docs-page.png. Exits non-zero on any failure; the service is always stopped.
#
#   scripts/docs/check.sh              # uses CARGO_TARGET_DIR when set
#   SCREENSHOT=/tmp/p.png scripts/docs/check.sh
#
# Installs Debian's `chromium` (apt-get) when no Chromium is on PATH.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
screenshot="${SCREENSHOT:-$root/docs/docs-page.png}"
work="$(mktemp -d)"
pid=""

log() { printf 'docs-check: %s\n' "$*" >&2; }
fail() {
    log "FAIL: $*"
    exit 1
}
cleanup() {
    local rc=$?
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 && -s "$work/service.log" ]]; then
        log "service log (last 30 lines):"
        tail -n 30 "$work/service.log" >&2 || true
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Chromium.
chromium=""
for c in chromium chromium-browser google-chrome; do
    if command -v "$c" >/dev/null 2>&1; then
        chromium="$(command -v "$c")"
        break
    fi
done
if [[ -z "$chromium" ]]; then
    log "installing chromium"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get install -y -qq chromium >"$work/apt.log" 2>&1; then
        $sudo apt-get update -qq >>"$work/apt.log" 2>&1 || true
        $sudo apt-get install -y -qq chromium >>"$work/apt.log" 2>&1 ||
            { tail -n 20 "$work/apt.log" >&2; fail "could not install chromium"; }
    fi
    chromium="$(command -v chromium)" || fail "chromium not on PATH after install"
fi

# 2. The service, in demo mode on a free loopback port.
log "building provisioner"
cargo build -q -p provisioner
bin="${CARGO_TARGET_DIR:-$root/target}/debug/provisioner"
[[ -x "$bin" ]] || fail "no binary at $bin"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null && return
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    return 1
}
port="$(free_port)" || fail "no free port"
base="http://127.0.0.1:$port"
"$bin" demo --listen "127.0.0.1:$port" --data-dir "$work/demo" >"$work/service.log" 2>&1 &
pid=$!
log "demo started (pid $pid) on $base"
for i in $(seq 240); do
    if curl -fsS -o /dev/null --max-time 2 "$base/healthz" 2>/dev/null; then
        break
    fi
    kill -0 "$pid" 2>/dev/null || fail "the service exited before answering /healthz"
    [[ $i -lt 240 ]] || fail "no /healthz answer from $base within 120 s"
    sleep 0.5
done

# 3. The rendered DOM.
browser=("$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage
    --no-first-run --hide-scrollbars --user-data-dir="$work/profile")
timeout 120 "${browser[@]}" --dump-dom "$base/docs" >"$work/dom.html" 2>"$work/chromium.log" ||
    { tail -n 20 "$work/chromium.log" >&2; fail "chromium --dump-dom failed"; }
[[ -s "$work/dom.html" ]] || fail "empty DOM"

# The user PUT operation's section: its method, its path and its request body's fields.
section="$(python3 - "$work/dom.html" <<'PY'
import re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r'<section class="op" id="op-put_user">.*?</section>', dom, re.S)
print(m.group(0) if m else "")
PY
)"
[[ -n "$section" ]] || fail "no user PUT operation (#op-put_user) in the rendered DOM"
expect() {
    grep -qF -- "$1" <<<"$section" || fail "the user PUT operation lacks: $1"
}
expect '>PUT<'
expect '/v1/tenants/<span class="pp">{tenant_id}</span>/users/<span class="pp">{external_id}</span>'
expect 'Request body'
for f in scope_profile scopes display_name metadata; do
    expect "<code class=\"fn\">$f</code>"
done
expect '<span class="sc s2">201</span>'
# The contents list users first and tenants second.
order="$(grep -o 'class="tgn" href="#tag-[a-z-]*"' "$work/dom.html" | sed 's/.*#tag-//; s/"$//' | tr '\n' ' ')"
[[ "$order" == "users tenants "* ]] || fail "contents order is '$order', expected users and tenants first"
! grep -q '`' <<<"$section" || fail "raw backticks in the user PUT operation"
log "DOM ok: #op-put_user with scope_profile, scopes, display_name, metadata; tags: $order"

# 4. Screenshot.
mkdir -p "$(dirname "$screenshot")"
rm -f "$screenshot"
(cd "$work" && timeout 120 "${browser[@]}" --window-size=1280,1600 \
    --screenshot="$screenshot" "$base/docs" >>"$work/chromium.log" 2>&1) ||
    { tail -n 20 "$work/chromium.log" >&2; fail "chromium --screenshot failed"; }
[[ -s "$screenshot" ]] || fail "no screenshot at $screenshot"
log "screenshot: ${screenshot#"$root"/}"
log "OK"
