"""Summarizes a schemathesis NDJSON report: requests sent, operations tested, failures.

usage: summarize.py REPORT_DIR MIN_REQUESTS ST_EXIT_STATUS
Prints "schemathesis: N requests, M operations, F failures" and exits non-zero when schemathesis
failed, a check failed, a test errored, or fewer than MIN_REQUESTS requests were sent.
"""

import collections
import glob
import json
import sys


def main() -> int:
    report_dir, min_requests, st_status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    files = glob.glob(f"{report_dir}/*.ndjson")
    if len(files) != 1:
        print(f"schemathesis: 0 requests, 0 operations, 1 failures (expected one NDJSON report, found {len(files)})")
        return 1
    requests = 0
    statuses = collections.Counter()
    operations = set()
    failed_checks = collections.Counter()
    errors = 0
    with open(files[0], encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            if "ScenarioFinished" in event:
                scenario = event["ScenarioFinished"]
                recorder = scenario.get("recorder", {})
                label = recorder.get("label", "")
                interactions = recorder.get("interactions", {})
                if interactions and label != "Stateful tests":
                    operations.add(label)
                for interaction in interactions.values():
                    requests += 1
                    response = interaction.get("response") or {}
                    statuses[response.get("status_code", "no response")] += 1
                for checks in recorder.get("checks", {}).values():
                    for check in checks:
                        if check.get("status") == "failure":
                            failed_checks[check.get("name")] += 1
                if scenario.get("status") == "error":
                    errors += 1
            elif "NonFatalError" in event or "FatalError" in event:
                errors += 1
    failures = sum(failed_checks.values()) + errors
    by_status = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0])))
    print(f"responses by status: {by_status}")
    for name, n in sorted(failed_checks.items()):
        print(f"failed check {name}: {n}")
    if errors:
        print(f"errors: {errors}")
    reasons = []
    if st_status != 0:
        reasons.append(f"st exited with {st_status}")
    if requests < min_requests:
        reasons.append(f"fewer than {min_requests} requests")
    if failures == 0 and reasons:
        failures = 1
    suffix = f" ({'; '.join(reasons)})" if reasons else ""
    print(f"schemathesis: {requests} requests, {len(operations)} operations, {failures} failures{suffix}")
    return 1 if failures or reasons else 0


if __name__ == "__main__":
    sys.exit(main())
