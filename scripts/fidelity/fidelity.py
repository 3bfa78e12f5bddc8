#!/usr/bin/env python3
"""Fidelity check: drive the Clarifai simulator with the OFFICIAL python client (clarifai-grpc,
JSON channel) and check ids, scopes and status codes.

Usage: fidelity.py BASE_URL   (e.g. http://127.0.0.1:41234; the sim runs with fid-user:fid-pat-123)

The JSON channel (clarifai_grpc/channel/grpc_json_channel.py) maps each RPC to its
google.api.http route, sends GET fields as query parameters and a JSON body on DELETE, and parses
the JSON body whatever the HTTP status, so errors arrive as response.status.code.
"""
import sys
import time
import uuid

from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2
from google.protobuf import struct_pb2

USER = "fid-user"
PAT = "fid-pat-123"
AUTH = (("authorization", "Key " + PAT),)

passed = 0
failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


class Paced:
    """Wraps the stub so calls stay under the simulator's default 15 requests/s per account."""

    def __init__(self, stub, per_sec=12):
        self._stub = stub
        self._gap = 1.0 / per_sec
        self._last = 0.0

    def __getattr__(self, name):
        rpc = getattr(self._stub, name)

        def call(*args, **kwargs):
            wait = self._last + self._gap - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()
            return rpc(*args, **kwargs)

        return call


def code_name(resp):
    return status_code_pb2.StatusCode.Name(resp.status.code)


def main(base_url):
    channel = ClarifaiChannel.get_json_channel(base_url=base_url)
    raw_stub = service_pb2_grpc.V2Stub(channel)
    stub = Paced(raw_stub)
    uid = resources_pb2.UserAppIDSet(user_id=USER)
    me = resources_pb2.UserAppIDSet(user_id="me")
    app_id = "fid-" + uuid.uuid4().hex[:8]

    # PostApps with the SDKs' default workflow, a description and metadata.
    metadata = struct_pb2.Struct()
    metadata.update({"provisioner": {"tenant": "acme", "external_id": "000123"}})
    app = resources_pb2.App(
        id=app_id,
        description="fidelity app",
        metadata=metadata,
        default_workflow=resources_pb2.Workflow(id="Empty", app_id="main", user_id="clarifai"),
    )
    r = stub.PostApps(service_pb2.PostAppsRequest(user_app_id=uid, apps=[app]), metadata=AUTH)
    check("PostApps succeeds", r.status.code == status_code_pb2.SUCCESS, code_name(r))
    check("PostApps echoes the id", len(r.apps) == 1 and r.apps[0].id == app_id)
    check("PostApps sets user_id", len(r.apps) == 1 and r.apps[0].user_id == USER)
    check(
        "PostApps keeps metadata",
        len(r.apps) == 1 and r.apps[0].metadata["provisioner"]["tenant"] == "acme",
    )
    check(
        "PostApps echoes default_workflow",
        len(r.apps) == 1 and r.apps[0].default_workflow.id == "Empty",
    )

    r = stub.PostApps(service_pb2.PostAppsRequest(user_app_id=uid, apps=[app]), metadata=AUTH)
    check(
        "duplicate app is DATABASE_DUPLICATE_KEY (40010)",
        r.status.code == status_code_pb2.DATABASE_DUPLICATE_KEY,
        code_name(r),
    )

    r = stub.PostApps(
        service_pb2.PostAppsRequest(user_app_id=uid, apps=[resources_pb2.App(id="bad id!")]),
        metadata=AUTH,
    )
    check("invalid app id is CONN_INVALID_REQUEST", r.status.code == status_code_pb2.CONN_INVALID_REQUEST, code_name(r))

    # GetApp, with the user id and with `me`.
    r = stub.GetApp(
        service_pb2.GetAppRequest(user_app_id=resources_pb2.UserAppIDSet(user_id=USER, app_id=app_id)),
        metadata=AUTH,
    )
    check("GetApp finds the app", r.status.code == status_code_pb2.SUCCESS and r.app.id == app_id, code_name(r))
    check("GetApp has created_at", r.app.created_at.seconds > 0)
    r = stub.GetApp(
        service_pb2.GetAppRequest(user_app_id=resources_pb2.UserAppIDSet(user_id="me", app_id=app_id)),
        metadata=AUTH,
    )
    check("GetApp with me", r.status.code == status_code_pb2.SUCCESS and r.app.id == app_id, code_name(r))
    r = stub.GetApp(
        service_pb2.GetAppRequest(user_app_id=resources_pb2.UserAppIDSet(user_id=USER, app_id="nope")),
        metadata=AUTH,
    )
    check("missing app is CONN_DOES_NOT_EXIST (11101)", r.status.code == status_code_pb2.CONN_DOES_NOT_EXIST, code_name(r))
    r = stub.GetApp(
        service_pb2.GetAppRequest(user_app_id=resources_pb2.UserAppIDSet(user_id="someone-else", app_id=app_id)),
        metadata=AUTH,
    )
    check("another user's id is CONN_DOES_NOT_EXIST", r.status.code == status_code_pb2.CONN_DOES_NOT_EXIST, code_name(r))

    # ListApps with pagination.
    r = stub.ListApps(service_pb2.ListAppsRequest(user_app_id=me, page=1, per_page=10), metadata=AUTH)
    check("ListApps lists the app", r.status.code == status_code_pb2.SUCCESS and app_id in [a.id for a in r.apps], code_name(r))
    r = stub.ListApps(service_pb2.ListAppsRequest(user_app_id=me, page=99, per_page=10), metadata=AUTH)
    check("ListApps past the end is empty", r.status.code == status_code_pb2.SUCCESS and len(r.apps) == 0, code_name(r))

    # PostKeys scoped to the app.
    key = resources_pb2.Key(
        description="prov:fidelity",
        scopes=["Predict", "Inputs:Get"],
        apps=[resources_pb2.App(id=app_id, user_id=USER)],
    )
    r = stub.PostKeys(service_pb2.PostKeysRequest(user_app_id=uid, keys=[key]), metadata=AUTH)
    check("PostKeys succeeds", r.status.code == status_code_pb2.SUCCESS and len(r.keys) == 1, code_name(r))
    key_id = r.keys[0].id if r.keys else ""
    check("PostKeys returns a 32-char id", len(key_id) == 32)
    check("PostKeys echoes scopes", r.keys and list(r.keys[0].scopes) == ["Predict", "Inputs:Get"])
    check("PostKeys names the app", r.keys and [a.id for a in r.keys[0].apps] == [app_id])
    check("PostKeys type is app_specific_key", r.keys and r.keys[0].type == "app_specific_key")

    bad = resources_pb2.Key(description="x", scopes=["Concepts:Delete"], apps=[resources_pb2.App(id=app_id, user_id=USER)])
    r = stub.PostKeys(service_pb2.PostKeysRequest(user_app_id=uid, keys=[bad]), metadata=AUTH)
    check("internal scope is refused", r.status.code == status_code_pb2.CONN_INVALID_REQUEST, code_name(r))
    orphan = resources_pb2.Key(description="x", scopes=["Predict"], apps=[resources_pb2.App(id="no-such-app", user_id=USER)])
    r = stub.PostKeys(service_pb2.PostKeysRequest(user_app_id=uid, keys=[orphan]), metadata=AUTH)
    check("key on a missing app is CONN_DOES_NOT_EXIST", r.status.code == status_code_pb2.CONN_DOES_NOT_EXIST, code_name(r))

    # GetKey, ListKeys, ListAppKeys.
    r = stub.GetKey(service_pb2.GetKeyRequest(user_app_id=uid, key_id=key_id), metadata=AUTH)
    check("GetKey finds the key", r.status.code == status_code_pb2.SUCCESS and r.key.id == key_id, code_name(r))
    r = stub.ListKeys(service_pb2.ListKeysRequest(user_app_id=me, page=1, per_page=100), metadata=AUTH)
    check("ListKeys lists the key", r.status.code == status_code_pb2.SUCCESS and key_id in [k.id for k in r.keys], code_name(r))
    r = stub.ListAppKeys(
        service_pb2.ListAppKeysRequest(user_app_id=resources_pb2.UserAppIDSet(user_id=USER, app_id=app_id)),
        metadata=AUTH,
    )
    check("ListAppKeys lists the key", r.status.code == status_code_pb2.SUCCESS and [k.id for k in r.keys] == [key_id], code_name(r))

    # MyScopes with the new app key, and MyScopesUser with the PAT.
    key_auth = (("authorization", "Key " + key_id),)
    r = stub.MyScopes(service_pb2.MyScopesRequest(), metadata=key_auth)
    check("MyScopes with the app key", r.status.code == status_code_pb2.SUCCESS and list(r.scopes) == ["Predict", "Inputs:Get"], code_name(r))
    check("MyScopes names the key's app", r.app.id == app_id)
    r = stub.MyScopes(
        service_pb2.MyScopesRequest(user_app_id=resources_pb2.UserAppIDSet(user_id=USER, app_id=app_id)),
        metadata=key_auth,
    )
    check("MyScopes on the app path", r.status.code == status_code_pb2.SUCCESS and r.app.id == app_id, code_name(r))
    r = stub.MyScopesUser(service_pb2.MyScopesUserRequest(user_app_id=uid), metadata=AUTH)
    check("MyScopesUser with the PAT", r.status.code == status_code_pb2.SUCCESS and "All" in r.scopes, code_name(r))
    r = stub.ListApps(service_pb2.ListAppsRequest(user_app_id=me), metadata=key_auth)
    check("app key refused on ListApps", r.status.code == status_code_pb2.CONN_INSUFFICIENT_SCOPES, code_name(r))
    r = stub.ListScopes(service_pb2.ListScopesRequest(user_app_id=uid), metadata=AUTH)
    check("ListScopes refuses a PAT", r.status.code == status_code_pb2.CONN_KEY_INVALID, code_name(r))
    r = stub.GetUser(service_pb2.GetUserRequest(user_app_id=me), metadata=AUTH)
    check("GetUser me", r.status.code == status_code_pb2.SUCCESS and r.user.id == USER, code_name(r))

    # Wrong PAT.
    wrong = (("authorization", "Key not-a-real-pat"),)
    r = stub.ListApps(service_pb2.ListAppsRequest(user_app_id=me), metadata=wrong)
    check("wrong PAT is CONN_KEY_NOT_FOUND (11009)", r.status.code == status_code_pb2.CONN_KEY_NOT_FOUND, code_name(r))

    # DeleteKey, then DeleteApp (which also deletes remaining keys).
    r = stub.DeleteKey(service_pb2.DeleteKeyRequest(user_app_id=uid, key_id=key_id), metadata=AUTH)
    check("DeleteKey succeeds", r.status.code == status_code_pb2.SUCCESS, code_name(r))
    r = stub.GetKey(service_pb2.GetKeyRequest(user_app_id=uid, key_id=key_id), metadata=AUTH)
    check("deleted key is gone", r.status.code == status_code_pb2.CONN_DOES_NOT_EXIST, code_name(r))
    r = stub.DeleteKey(service_pb2.DeleteKeyRequest(user_app_id=uid, key_id=key_id), metadata=AUTH)
    check("DeleteKey twice is CONN_DOES_NOT_EXIST", r.status.code == status_code_pb2.CONN_DOES_NOT_EXIST, code_name(r))

    r = stub.PostKeys(service_pb2.PostKeysRequest(user_app_id=uid, keys=[key]), metadata=AUTH)
    second_key = r.keys[0].id if r.keys else ""
    r = stub.DeleteApp(
        service_pb2.DeleteAppRequest(user_app_id=resources_pb2.UserAppIDSet(user_id=USER, app_id=app_id)),
        metadata=AUTH,
    )
    check("DeleteApp succeeds", r.status.code == status_code_pb2.SUCCESS, code_name(r))
    check("second key created", second_key != "")
    if second_key:
        r = stub.GetKey(service_pb2.GetKeyRequest(user_app_id=uid, key_id=second_key), metadata=AUTH)
        check("DeleteApp deleted its keys", r.status.code == status_code_pb2.CONN_DOES_NOT_EXIST, code_name(r))
    r = stub.GetApp(
        service_pb2.GetAppRequest(user_app_id=resources_pb2.UserAppIDSet(user_id=USER, app_id=app_id)),
        metadata=AUTH,
    )
    check("deleted app is gone", r.status.code == status_code_pb2.CONN_DOES_NOT_EXIST, code_name(r))

    # Rate limit: an unpaced burst past 15 requests/s gets CONN_THROTTLED (sent as the string
    # name, which the official client parses into the enum).
    time.sleep(1.1)
    codes = [raw_stub.ListApps(service_pb2.ListAppsRequest(user_app_id=me), metadata=AUTH).status.code for _ in range(25)]
    check("burst is throttled with CONN_THROTTLED (11005)", status_code_pb2.CONN_THROTTLED in codes, str(set(codes)))
    check("burst lets the first requests through", codes[0] == status_code_pb2.SUCCESS)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: fidelity.py BASE_URL")
    try:
        main(sys.argv[1])
    except Exception as e:  # an exception is a failure of the run, reported as such
        failed += 1
        print(f"FAIL exception: {type(e).__name__}: {e}")
    print(f"fidelity: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
