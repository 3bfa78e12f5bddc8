#!/usr/bin/env bash
# Checks the deployment recipes under deploy/ offline: no cluster, no container daemon, no
# root needed. Exits non-zero when a check fails.
#
#   1. every YAML file under deploy/ parses;
#   2. `kubectl kustomize` renders the base and every overlay, and every rendered pod meets
#      the restricted Pod Security profile (per container: runAsNonRoot, no privilege
#      escalation, ALL capabilities dropped, read-only root filesystem, RuntimeDefault
#      seccomp), mounts no service account token, has the probes, a preStop delay within its
#      grace period, and takes its secrets as files; a PodDisruptionBudget and a NetworkPolicy
#      exist;
#   3. every PROVISIONER_* name used under deploy/ is one the binary reads (the list comes from
#      the binary, `provisioner config vars`, i.e. from config.rs: no second list here);
#   4. `systemd-analyze verify` accepts the unit (on a copy whose ExecStart= points at the
#      binary built here: verify insists that the ExecStart binary exists, and
#      /usr/local/bin/provisioner does not on a build machine), and the unit has the
#      hardening and credential settings;
#   5. the Containerfile: `docker build` when a daemon answers; otherwise a structural lint
#      (and the build is reported as skipped, not as passed).
#
# The binary: $DEPLOY_CHECK_BIN if set (CI passes the one `cargo test` built), else
# `cargo build -p provisioner`.
set -euo pipefail
cd "$(dirname "$0")/../.."

failures=0
pass() { echo "ok    $*"; }
fail() {
  echo "FAIL  $*" >&2
  failures=$((failures + 1))
}
skip() { echo "skip  $*"; }

for tool in python3 kubectl; do
  command -v "$tool" >/dev/null || { echo "FAIL  $tool is not installed (needed for these checks)" >&2; exit 1; }
done
python3 -c 'import yaml' 2>/dev/null || { echo "FAIL  PyYAML is not installed (python3 -c 'import yaml')" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ -n "${DEPLOY_CHECK_BIN:-}" ]]; then
  bin="$DEPLOY_CHECK_BIN"
else
  echo "== building the binary (cargo build -p provisioner)"
  cargo build -q -p provisioner
  bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/provisioner"
fi
[[ -x "$bin" ]] || { echo "no provisioner binary at $bin" >&2; exit 1; }
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

echo "== 1. YAML syntax"
mapfile -t yamls < <(find deploy -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
for f in "${yamls[@]}"; do
  if python3 -c 'import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))' "$f" 2>"$work/err"; then
    pass "$f parses"
  else
    fail "$f does not parse: $(cat "$work/err")"
  fi
done
[[ ${#yamls[@]} -gt 0 ]] || fail "no YAML under deploy/"

echo "== 2. Kubernetes: kustomize renders; restricted profile, probes, shutdown, secrets as files"
kdirs=(deploy/kubernetes/base)
for d in deploy/kubernetes/overlays/*/; do
  [[ -f "$d/kustomization.yaml" ]] && kdirs+=("${d%/}")
done
for d in "${kdirs[@]}"; do
  out="$work/$(echo "$d" | tr '/' '_').yaml"
  if ! kubectl kustomize "$d" >"$out" 2>"$work/err"; then
    fail "kubectl kustomize $d: $(cat "$work/err")"
    continue
  fi
  pass "kubectl kustomize $d renders ($(grep -c '^kind:' "$out") objects)"
  if python3 - "$d" "$out" >"$work/k8s" 2>&1 <<'PY'; then
import sys, yaml

name, path = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
problems = []
kinds = {d["kind"] for d in docs}
for want in ("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"):
    if want not in kinds:
        problems.append(f"no {want}")
if "Job" in kinds or "CronJob" in kinds:
    problems.append("a Job: `serve` migrates on start, a migration Job is not wanted")

SECRET_VARS = {"PROVISIONER_MASTER_KEY", "PROVISIONER_MASTER_KEY_PREVIOUS",
               "PROVISIONER_JWT_HS256_SECRET", "PROVISIONER_DATABASE_URL"}

def pod_specs(doc):
    spec = doc.get("spec", {})
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield spec["template"]["spec"]
    elif doc["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif doc["kind"] == "Pod":
        yield spec

for doc in docs:
    for pod in pod_specs(doc):
        where = f'{doc["kind"]}/{doc["metadata"]["name"]}'
        psc = pod.get("securityContext", {})
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: automountServiceAccountToken is not false")
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            problems.append(f"{where}: host namespaces")
        mounts_ok = {m["name"] for m in pod.get("volumes", []) if "secret" in m}
        containers = pod.get("initContainers", []) + pod.get("containers", [])
        for c in containers:
            cw = f'{where} container {c["name"]}'
            sc = c.get("securityContext", {})
            def eff(key):
                return sc.get(key, psc.get(key))
            if eff("runAsNonRoot") is not True:
                problems.append(f"{cw}: runAsNonRoot is not true")
            if eff("runAsUser") == 0:
                problems.append(f"{cw}: runAsUser 0")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cw}: allowPrivilegeEscalation is not false")
            if "ALL" not in (sc.get("capabilities", {}).get("drop") or []):
                problems.append(f"{cw}: capabilities do not drop ALL")
            if sc.get("capabilities", {}).get("add"):
                problems.append(f"{cw}: capabilities added")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cw}: readOnlyRootFilesystem is not true")
            if (eff("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{cw}: seccompProfile is not RuntimeDefault")
            if sc.get("privileged"):
                problems.append(f"{cw}: privileged")
            if c.get("envFrom"):
                problems.append(f"{cw}: envFrom (secrets go in as files)")
            env = {e["name"]: e for e in c.get("env", [])}
            for n, e in env.items():
                if n in SECRET_VARS:
                    problems.append(f"{cw}: {n} as a variable (use {n}_FILE)")
                if "secretKeyRef" in e.get("valueFrom", {}):
                    problems.append(f"{cw}: {n} from a secretKeyRef (mount the Secret as files)")
            secret_dirs = [m["mountPath"] for m in c.get("volumeMounts", []) if m["name"] in mounts_ok]
            for n in ("PROVISIONER_MASTER_KEY_FILE", "PROVISIONER_JWT_HS256_SECRET_FILE",
                      "PROVISIONER_DATABASE_URL_FILE"):
                # Every main container, whether it runs `serve` through args or the image's CMD.
                if c in pod.get("containers", []):
                    v = env.get(n, {}).get("value", "")
                    if not any(v.startswith(d.rstrip("/") + "/") for d in secret_dirs):
                        problems.append(f"{cw}: {n} is not a file of a mounted Secret")
        for c in pod.get("containers", []):
            cw = f'{where} container {c["name"]}'
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            if ports.get("metrics") != 9464:
                problems.append(f"{cw}: no port named metrics on 9464")
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if env.get("PROVISIONER_METRICS_LISTEN") != "0.0.0.0:9464":
                problems.append(f"{cw}: PROVISIONER_METRICS_LISTEN is not 0.0.0.0:9464")
            for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"),
                                ("livenessProbe", "/healthz")):
                got = (c.get(probe) or {}).get("httpGet", {}).get("path")
                if got != path:
                    problems.append(f"{cw}: {probe} is not GET {path} (got {got})")
            pre = (c.get("lifecycle") or {}).get("preStop") or {}
            delay = None
            if "sleep" in pre:
                delay = int(pre["sleep"]["seconds"])
            elif "exec" in pre and pre["exec"]["command"][0].endswith("sleep"):
                delay = int(pre["exec"]["command"][1])
            if delay is None:
                problems.append(f"{cw}: no preStop sleep")
                continue
            shutdown = int(env.get("PROVISIONER_SHUTDOWN_TIMEOUT_SECS") or 30)
            grace = int(pod.get("terminationGracePeriodSeconds", 30))
            # The server drains for up to the shutdown timeout, the workers get as long again.
            if grace <= delay + 2 * shutdown:
                problems.append(f"{cw}: terminationGracePeriodSeconds {grace} <= preStop {delay} + 2 x shutdown timeout {shutdown}")

for p in problems:
    print(p)
print(f"{len(problems)} problem(s) in {name}")
sys.exit(1 if problems else 0)
PY
    pass "$d: $(tail -1 "$work/k8s")"
  else
    fail "$d: $(cat "$work/k8s")"
  fi
done

echo "== 3. PROVISIONER_* names used under deploy/ are settings of the binary"
"$bin" config vars | sort -u >"$work/known"
[[ -s "$work/known" ]] || fail "'provisioner config vars' printed nothing"
grep -rhoE 'PROVISIONER_[A-Z0-9_]*[A-Z0-9]' deploy/ | sort -u >"$work/used"
unknown="$(comm -23 "$work/used" "$work/known" | tr '\n' ' ')"
if [[ -n "$unknown" ]]; then
  fail "deploy/ uses names the binary does not read: $unknown"
else
  pass "$(wc -l <"$work/used") names used under deploy/, all known to the binary ($(wc -l <"$work/known") known)"
fi

echo "== 4. systemd unit"
unit=deploy/systemd/provisioner.service
for want in 'UMask=0077' 'StateDirectory=provisioner' 'StateDirectoryMode=0700' \
  'DynamicUser=yes' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' \
  'PrivateTmp=yes' 'PrivateDevices=yes' 'CapabilityBoundingSet=' \
  'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
  'SystemCallFilter=@system-service' \
  'LoadCredential=master-key:' 'LoadCredential=jwt-hs256-secret:' 'LoadCredential=database-url:' \
  'Environment=PROVISIONER_MASTER_KEY_FILE=%d/master-key' \
  'Environment=PROVISIONER_JWT_HS256_SECRET_FILE=%d/jwt-hs256-secret' \
  'Environment=PROVISIONER_DATABASE_URL_FILE=%d/database-url'; do
  # Whole lines (an empty `CapabilityBoundingSet=` must not pass as a prefix of a granted one),
  # except the credential names, whose source paths are the operator's.
  if [[ "$want" == *: ]]; then
    grep -qF -- "$want" <(grep -E '^LoadCredential=' "$unit") || fail "$unit lacks $want"
  else
    grep -qxF -- "$want" "$unit" || fail "$unit lacks the line $want"
  fi
done
for secret in PROVISIONER_MASTER_KEY PROVISIONER_JWT_HS256_SECRET PROVISIONER_DATABASE_URL; do
  if grep -qE "^Environment=\"?${secret}=" "$unit"; then fail "$unit sets $secret as a variable"; fi
done
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$work/unit"
  sed "s|^ExecStart=/usr/local/bin/provisioner |ExecStart=$bin |" "$unit" >"$work/unit/provisioner.service"
  grep -q "^ExecStart=$bin serve" "$work/unit/provisioner.service" || fail "could not point ExecStart at $bin"
  if systemd-analyze verify "$work/unit/provisioner.service" >"$work/verify" 2>&1 && [[ ! -s "$work/verify" ]]; then
    pass "systemd-analyze verify $unit (ExecStart pointed at $bin)"
  else
    fail "systemd-analyze verify $unit: $(cat "$work/verify")"
  fi
else
  skip "systemd-analyze verify (systemd-analyze not installed)"
fi

echo "== 5. Container image"
cf=deploy/Containerfile
failures_before=$failures
lint() {
  local what="$1" pattern="$2"
  if grep -qE -- "$pattern" "$cf"; then :; else fail "$cf: $what"; fi
}
lint "cargo build --locked --release" 'cargo build --locked --release'
lint "the production build leaves the demo out (--no-default-features)" 'cargo build .*--no-default-features'
lint "a HEALTHCHECK running provisioner healthcheck" '^HEALTHCHECK .*'
lint "a HEALTHCHECK running provisioner healthcheck" '"/usr/local/bin/provisioner", "healthcheck"'
lint "USER is a numeric non-root uid" '^USER [1-9][0-9]*(:[0-9]+)?$'
lint "the data directory belongs to the uid" 'install -d -o 10001 -g 10001 -m 0700 /var/lib/provisioner'
lint "Cargo.lock in the dependency layer" '^COPY Cargo.toml Cargo.lock'
if grep -qE '^ENV .*PROVISIONER_DATABASE_URL=|^ +PROVISIONER_DATABASE_URL=' "$cf"; then
  fail "$cf sets PROVISIONER_DATABASE_URL (it would conflict with PROVISIONER_DATABASE_URL_FILE)"
fi
# The dependency layer must copy every workspace member's manifest (a new crate breaks it).
for m in crates/*/Cargo.toml; do
  grep -qE "^COPY ${m}( |$)" "$cf" || fail "$cf: the dependency layer does not copy $m"
done
# The dependency layer comes before the sources, and the sources are touched after COPY.
first_build=$(grep -n 'cargo build' "$cf" | head -1 | cut -d: -f1)
copy_src=$(grep -n '^COPY crates crates' "$cf" | cut -d: -f1)
if [[ -n "$first_build" && -n "$copy_src" && "$first_build" -lt "$copy_src" ]]; then :; else
  fail "$cf: no dependency-only build before COPY crates"
fi
lint "sources touched after COPY (placeholders built earlier may be newer)" 'touch'
for f in .containerignore .dockerignore; do
  [[ -f "$f" ]] || { fail "no $f"; continue; }
  for p in 'target/' '.git/' 'data/'; do
    grep -qxF "$p" "$f" || fail "$f does not exclude $p"
  done
done
if [[ -f .containerignore && -f .dockerignore ]] && ! cmp -s .containerignore .dockerignore; then
  fail ".dockerignore and .containerignore differ"
fi
if [[ $failures -eq $failures_before ]]; then
  pass "$cf and the ignore files pass the structural lint"
fi
if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
  if docker build -f "$cf" -t provisioner:deploy-check . >"$work/build" 2>&1; then
    pass "docker build -f $cf"
    docker run --rm --entrypoint /usr/local/bin/provisioner provisioner:deploy-check config vars >/dev/null \
      && pass "the image runs" || fail "the image does not run"
  else
    fail "docker build -f $cf: $(tail -20 "$work/build")"
  fi
else
  skip "docker build -f $cf: no container daemon answers here (structural lint only)"
fi

echo
if [[ $failures -gt 0 ]]; then
  echo "deploy check: $failures failure(s)" >&2
  exit 1
fi
echo "deploy check: all passed"
