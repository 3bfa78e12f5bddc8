#!/usr/bin/env python3
"""Benchmark baseline: the "obvious alternative" to the Provisioner, a sequential onboarding loop
with the OFFICIAL python client (clarifai-grpc, JSON channel).

Usage: python_baseline.py URL USER_ID PAT N

For i in 0..N, one after the other: PostApps creates the app `pybase-<runid>-<i>`, then PostKeys
creates one key restricted to that app. Every answer must be SUCCESS, or the script exits
non-zero with a message on stderr. A throttled answer (CONN_THROTTLED, HTTP 429) is honoured the
naive way: sleep RETRY_SLEEP_S and send the same request again, counting the retry.

Prints exactly one JSON line on stdout:
  {"users": N, "requests": R, "retries_429": X, "seconds": S, "users_per_sec": U}
where R counts every request sent (retries included, so R = 2*N + X) and S is measured with
time.perf_counter around the loop only (not the imports or the channel set-up).
"""
import json
import sys
import time
import uuid

from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.channel.errors import ApiError
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2

# Fixed pause before re-sending a throttled request. Short on purpose: at the simulator's default
# 15 requests/s token bucket a token comes back every ~67 ms, so this keeps the baseline close to
# the best a sequential client can do rather than handicapping it with a long back-off.
RETRY_SLEEP_S = 0.1
# Give up on one request after this many throttled answers in a row.
MAX_RETRIES = 100

KEY_SCOPES = ["Predict", "Search", "Inputs:Get", "Inputs:Add", "Concepts:Get"]


class Failure(Exception):
    pass


class Counters:
    def __init__(self):
        self.requests = 0
        self.retries_429 = 0


def _is_http_429(exc):
    """An ApiError raised by the JSON channel on a non-JSON answer carries the response as its
    4th argument; treat an HTTP 429 there like a throttled status."""
    if len(exc.args) >= 4:
        return getattr(exc.args[3], "status_code", None) == 429
    return False


def call(counters, what, rpc, request, metadata):
    """Sends `request`, re-sending it after a pause while the answer is throttled; returns the
    response on SUCCESS and raises Failure otherwise."""
    attempts = 0
    while True:
        counters.requests += 1
        try:
            resp = rpc(request, metadata=metadata)
        except ApiError as e:
            if _is_http_429(e):
                throttled = True
                resp = None
            else:
                raise Failure(f"{what}: client error: {e!r}") from e
        else:
            throttled = resp.status.code == status_code_pb2.CONN_THROTTLED
        if throttled:
            attempts += 1
            if attempts > MAX_RETRIES:
                raise Failure(f"{what}: still throttled after {MAX_RETRIES} retries")
            counters.retries_429 += 1
            time.sleep(RETRY_SLEEP_S)
            continue
        if resp.status.code != status_code_pb2.SUCCESS:
            try:
                name = status_code_pb2.StatusCode.Name(resp.status.code)
            except ValueError:
                name = "?"
            raise Failure(
                f"{what}: status {resp.status.code} ({name}): "
                f"{resp.status.description} {resp.status.details}".rstrip()
            )
        return resp


def onboard(stub, counters, user_id, auth, app_id):
    uid = resources_pb2.UserAppIDSet(user_id=user_id)

    app = resources_pb2.App(id=app_id, description="python baseline")
    r = call(
        counters,
        f"PostApps {app_id}",
        stub.PostApps,
        service_pb2.PostAppsRequest(user_app_id=uid, apps=[app]),
        auth,
    )
    if len(r.apps) != 1 or r.apps[0].id != app_id:
        raise Failure(f"PostApps {app_id}: unexpected apps in the answer: {[a.id for a in r.apps]}")

    key = resources_pb2.Key(
        description=f"pybase:{app_id}",
        scopes=KEY_SCOPES,
        apps=[resources_pb2.App(id=app_id, user_id=user_id)],
    )
    r = call(
        counters,
        f"PostKeys for {app_id}",
        stub.PostKeys,
        service_pb2.PostKeysRequest(user_app_id=uid, keys=[key]),
        auth,
    )
    if len(r.keys) != 1 or not r.keys[0].id:
        raise Failure(f"PostKeys for {app_id}: no key in the answer")


def main(argv):
    if len(argv) != 5:
        print("usage: python_baseline.py URL USER_ID PAT N", file=sys.stderr)
        return 2
    url, user_id, pat, n_text = argv[1:]
    try:
        n = int(n_text)
    except ValueError:
        n = -1
    if n < 0:
        print(f"python_baseline: N must be a non-negative integer, got {n_text!r}", file=sys.stderr)
        return 2

    channel = ClarifaiChannel.get_json_channel(base_url=url)
    stub = service_pb2_grpc.V2Stub(channel)
    auth = (("authorization", "Key " + pat),)
    run_id = uuid.uuid4().hex[:8]
    counters = Counters()

    try:
        start = time.perf_counter()
        for i in range(n):
            onboard(stub, counters, user_id, auth, f"pybase-{run_id}-{i}")
        seconds = time.perf_counter() - start
    except Failure as e:
        print(f"python_baseline: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # connection refused, bad URL, ...: still a clear one-line failure
        print(f"python_baseline: {type(e).__name__}: {e}", file=sys.stderr)
        return 1

    print(
        json.dumps(
            {
                "users": n,
                "requests": counters.requests,
                "retries_429": counters.retries_429,
                "seconds": round(seconds, 4),
                "users_per_sec": round(n / seconds, 3) if seconds > 0 else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
