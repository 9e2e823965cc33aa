"""The openshell REST API against a real Jupyter server: authentication, every endpoint, ownership.

Sandboxes are real (bubblewrap runtime) and their traffic goes through the real policy proxy to an upstream
server on 127.0.0.2 that the test starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal

import pytest
from tornado.httpclient import HTTPClientError

ROUTES = [
    ("GET", "sandboxes"),
    ("POST", "sandboxes"),
    ("GET", "sandboxes/x"),
    ("DELETE", "sandboxes/x"),
    ("POST", "sandboxes/x/exec"),
    ("GET", "policies/x"),
    ("PUT", "policies/x"),
    ("GET", "policies/x/history"),
    ("GET", "flows"),
    ("GET", "gpu"),
    ("GET", "openapi.json"),
]


def _body(method: str) -> str | None:
    return "{}" if method in ("POST", "PUT") else None


async def _status(fetch, method, path, headers=None, body=None) -> int:
    try:
        resp = await fetch(
            "openshell",
            "api",
            *path.split("/"),
            method=method,
            headers=headers,
            body=body if body is not None else _body(method),
            allow_nonstandard_methods=True,
        )
    except HTTPClientError as exc:
        return exc.code
    return resp.code


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_refuses_without_token(jp_fetch, method, path):
    assert await _status(jp_fetch, method, path, headers={"Authorization": ""}) == 403
    assert await _status(jp_fetch, method, path, headers={"Authorization": "token wrong"}) == 403


async def test_flow_stream_refuses_without_token(jp_ws_fetch):
    with pytest.raises(HTTPClientError) as err:
        await jp_ws_fetch("openshell", "api", "flows", "stream", headers={"Authorization": "token wrong"})
    assert err.value.code == 403


async def test_openapi_document_lists_every_route(jp_fetch, jp_serverapp):
    resp = await jp_fetch("openshell", "api", "openapi.json")
    doc = json.loads(resp.body)
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
    registered = set()
    ext = jp_serverapp.extension_manager.extension_points["openshell"].app
    for pattern, handler, *_ in ext.handlers:
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern).replace("/openshell/api", "")
        for method in ("get", "post", "put", "delete"):
            if method in handler.__dict__:
                registered.add((method.upper(), path))
    assert documented == registered


async def test_gpu_endpoint_answers_no_gpu_clearly(jp_fetch):
    resp = await jp_fetch("openshell", "api", "gpu")
    data = json.loads(resp.body)
    assert set(data) >= {"available", "reason", "gpus"}
    if not data["available"]:
        assert data["gpus"] == [] and "no GPU" in data["reason"]
    else:
        assert data["gpus"][0]["name"] and data["gpus"][0]["memory_total"] > 0


async def test_create_rejects_bad_input_with_field_paths(jp_fetch):
    for body, field in [({"name": "Bad Name"}, "name"), ({"name": "ok-1", "gpu": "yes"}, "gpu")]:
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch("openshell", "api", "sandboxes", method="POST", body=json.dumps(body))
        assert err.value.code == 400
        assert json.loads(err.value.response.body)["issues"][0]["field"] == field
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("openshell", "api", "sandboxes", method="POST", body="not json")
    assert err.value.code == 400


async def test_invalid_policy_on_create_is_400_with_line_and_field(jp_fetch):
    body = {
        "name": "badpolicy",
        "policy": "network:\n  egress:\n    - host: example.com\n      action: maybe\n",
    }
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("openshell", "api", "sandboxes", method="POST", body=json.dumps(body))
    assert err.value.code == 400
    issue = json.loads(err.value.response.body)["issues"][0]
    assert issue["line"] == 4 and "action" in issue["field"]
    resp = await jp_fetch("openshell", "api", "sandboxes")
    assert json.loads(resp.body)["sandboxes"] == []


async def test_a_500_logs_its_cause_with_the_traceback_on_the_server(jp_fetch, caplog):
    """The runtime refuses the sandbox (a read-only path that does not exist): the client gets the
    message, the server log the cause with its traceback."""
    body = {"name": "fails-500", "policy": "filesystem:\n  read_only: [/nonexistent-openshell-path]\n"}
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("openshell", "api", "sandboxes", method="POST", body=json.dumps(body))
    assert err.value.code == 500
    message = json.loads(err.value.response.body)["message"]
    assert "/nonexistent-openshell-path" in message and "Traceback" not in message
    logged = [r for r in caplog.records if "answered 500" in r.getMessage()]
    assert logged, caplog.text
    said = logged[0].getMessage()
    assert re.search(r"POST /\S*openshell/api/sandboxes answered 500: sandbox 'fails-500'", said), said
    assert logged[0].exc_info[0].__name__ == "SandboxError"
    assert "Traceback" in caplog.text and "in check_policy_paths" in caplog.text


def _fetch_json(fetch):
    async def call(*parts, method="GET", body=None, headers=None):
        resp = await fetch(
            "openshell",
            "api",
            *parts,
            method=method,
            headers=headers,
            body=None if body is None else (body if isinstance(body, str) else json.dumps(body)),
        )
        return resp.code, (json.loads(resp.body) if resp.body else None)

    return call


async def test_sandbox_lifecycle_exec_policy_flows_and_ownership(jp_fetch, jp_ws_fetch, bob, upstream):
    api = _fetch_json(jp_fetch)
    policy = (
        "network:\n  egress:\n"
        f"    - host: 127.0.0.2\n      ports: [{upstream.port}]\n      paths:\n"
        "        - path: /ok\n          methods: [GET]\n      action: allow\n"
    )
    code, info = await api("sandboxes", method="POST", body={"name": "api-box", "policy": policy})
    assert code == 201 and info["name"] == "api-box" and info["owner"]
    try:
        code, listing = await api("sandboxes")
        assert [s["name"] for s in listing["sandboxes"]] == ["api-box"]
        code, got = await api("sandboxes", "api-box")
        assert got["state"] == "running"

        code, out = await api(
            "sandboxes",
            "api-box",
            "exec",
            method="POST",
            body={"argv": ["python3", "-c", "import sys; print(sys.stdin.read().upper())"], "stdin": "hello"},
        )
        assert out["returncode"] == 0 and out["stdout"].strip() == "HELLO"

        # the websocket sees the sandbox's requests as they are decided
        ws = await jp_ws_fetch("openshell", "api", "flows", "stream", params={"sandbox": "api-box"})
        curl = "\n".join(
            [
                "import urllib.request as u",
                "for p in ('/ok', '/nope'):",
                f"    try: print(u.urlopen({upstream.url!r} + p).status)",
                "    except Exception as e: print(e)",
            ]
        )
        code, out = await api(
            "sandboxes", "api-box", "exec", method="POST", body={"argv": ["python3", "-c", curl]}
        )
        assert out["stdout"].split("\n")[0] == "200", out
        assert "403" in out["stdout"]
        seen = []
        while {r["path"] for r in seen} < {"/ok", "/nope"}:
            seen += json.loads(await asyncio.wait_for(ws.read_message(), 10))["flows"]
        ws.close()
        decisions = {r["path"]: r["decision"] for r in seen}
        assert decisions == {"/ok": "allow", "/nope": "deny"}

        resp = await jp_fetch("openshell", "api", "flows", params={"sandbox": "api-box", "limit": "1"})
        page = json.loads(resp.body)
        assert len(page["flows"]) == 1 and page["flows"][0]["sandbox"] == "api-box"

        code, shown = await api("policies", "api-box")
        assert shown["yaml"] == policy and len(shown["version"]) == 12
        bad = policy.replace("action: allow", "action: maybe")
        with pytest.raises(HTTPClientError) as err:
            await api("policies", "api-box", method="PUT", body=bad)
        assert err.value.code == 400
        issue = json.loads(err.value.response.body)["issues"][0]
        assert issue["line"] == 8 and "action" in issue["field"]
        newer = policy.replace("path: /ok", "path: /nope")
        code, applied = await api(
            "policies",
            "api-box",
            method="PUT",
            body={"yaml": newer},
            headers={"Content-Type": "application/json"},
        )
        assert code == 200 and applied["version"] != shown["version"]
        code, hist = await api("policies", "api-box", "history")
        assert [h["version"] for h in hist["history"]][-2:] == [shown["version"], applied["version"]]

        # bob sees nothing of alice's sandbox: 404 everywhere, and an empty list
        for method, parts, body in [
            ("GET", ("sandboxes", "api-box"), None),
            ("DELETE", ("sandboxes", "api-box"), None),
            ("POST", ("sandboxes", "api-box", "exec"), {"argv": ["true"]}),
            ("GET", ("policies", "api-box"), None),
            ("PUT", ("policies", "api-box"), policy),
            ("GET", ("policies", "api-box", "history"), None),
        ]:
            with pytest.raises(HTTPClientError) as err:
                await api(*parts, method=method, body=body, headers=bob)
            assert err.value.code == 404, (method, parts)
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch("openshell", "api", "flows", params={"sandbox": "api-box"}, headers=bob)
        assert err.value.code == 404
        resp = await jp_fetch("openshell", "api", "flows", headers=bob)
        assert json.loads(resp.body)["flows"] == []
        code, listing = await api("sandboxes", headers=bob)
        assert listing["sandboxes"] == []
    finally:
        code, _ = await api("sandboxes", "api-box", method="DELETE")
    assert code == 204
    with pytest.raises(HTTPClientError) as err:
        await api("sandboxes", "api-box")
    assert err.value.code == 404


async def test_server_supervises_the_proxy_and_stopping_it_removes_its_sandboxes(jp_fetch, jp_serverapp):
    from jupyter_openshell.proxy import ProxyClient
    from jupyter_openshell.runtime import get_backend

    ext = jp_serverapp.extension_manager.extension_points["openshell"].app
    client = ProxyClient()
    await jp_serverapp.extension_manager.start_all_extensions()  # what ServerApp does once its loop runs
    assert client.is_running()
    pid = client.status()["pid"]
    os.kill(pid, signal.SIGKILL)
    for _ in range(200):  # the supervisor brings it back
        await asyncio.sleep(0.1)
        if client.is_running():
            break
    assert client.is_running() and client.status()["pid"] != pid

    code, _ = await _fetch_json(jp_fetch)("sandboxes", method="POST", body={"name": "stop-box"})
    assert code == 201 and "stop-box" in {i.name for i in get_backend().list()}
    await ext.stop_extension()
    assert "stop-box" not in {i.name for i in get_backend().list()}
    if ext._started_proxy:
        assert not client.is_running()


async def test_kernel_whose_sandbox_cannot_start_fails_the_request_with_the_reason(
    jp_fetch, jp_data_dir, tmp_path
):
    from jupyter_openshell.kernel.kernelspec import kernel_json

    bad = tmp_path / "bad.yaml"
    bad.write_text("network:\n  egress:\n    - host: example.com\n      action: perhaps\n")
    spec_dir = jp_data_dir / "kernels" / "openshell-bad"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps(kernel_json(policy_file=str(bad), pool_size=0)))
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "openshell-bad"}))
    assert err.value.code == 500
    message = json.loads(err.value.response.body)["message"]
    assert "policy cannot be used" in message and "perhaps" in message


async def test_ownership_is_persisted_and_survives_an_extension_restart(jp_fetch, jp_serverapp, bob, carol):
    """Owners live in <state>/jupyter/owners.json: a re-initialised extension (what a restarted server
    builds) hands each sandbox to its creator only; one without a record goes to admins alone."""
    from jupyter_openshell.paths import state_dir
    from jupyter_openshell.runtime import SandboxSpec, get_backend

    api = _fetch_json(jp_fetch)
    ext = jp_serverapp.extension_manager.extension_points["openshell"].app
    backend = get_backend()

    async def names(headers=None):
        return [s["name"] for s in (await api("sandboxes", headers=headers))[1]["sandboxes"]]

    async def code_of(*parts, headers=None):
        try:
            return (await api(*parts, headers=headers))[0]
        except HTTPClientError as exc:
            return exc.code

    assert (await api("sandboxes", method="POST", body={"name": "own-alice"}))[0] == 201
    assert (await api("sandboxes", method="POST", body={"name": "own-bob"}, headers=bob))[0] == 201
    backend.create(SandboxSpec(name="own-nobody"))  # made outside the server: no recorded owner
    try:
        owners_file = state_dir() / "jupyter" / "owners.json"
        assert oct(owners_file.stat().st_mode & 0o777) == "0o600"
        recorded = json.loads(owners_file.read_text())
        assert {n: r["owner"] for n, r in recorded.items()} == {"own-alice": "alice", "own-bob": "bob"}

        ext.initialize_settings()  # a fresh SandboxManager: nothing in memory, only what was persisted
        assert ext.sandboxes._records.keys() == {"own-alice", "own-bob"}
        assert await names() == ["own-alice"]
        assert await names(bob) == ["own-bob"]
        assert await names(carol) == ["own-nobody"]  # the admin: unowned ones only, not alice's or bob's
        assert await code_of("sandboxes", "own-alice", headers=bob) == 404
        assert await code_of("sandboxes", "own-bob") == 404
        assert await code_of("sandboxes", "own-nobody") == 404
        assert await code_of("policies", "own-nobody", headers=bob) == 404
        assert await code_of("sandboxes", "own-alice", headers=carol) == 404
        assert await code_of("sandboxes", "own-nobody", headers=carol) == 200
        got = (await api("sandboxes", "own-alice"))[1]
        assert got["owner"] == "alice" and got["state"] == "running"

        # a later sandbox that reuses a recorded name is not the recorded one: nobody inherits it
        backend.destroy("own-bob")
        backend.create(SandboxSpec(name="own-bob"))
        assert await code_of("sandboxes", "own-bob", headers=bob) == 404
        assert await names(bob) == []
        assert "own-bob" not in json.loads(owners_file.read_text())
    finally:
        for name in ("own-nobody", "own-bob"):
            backend.destroy(name)
        assert (await api("sandboxes", "own-alice", method="DELETE"))[0] == 204
    assert json.loads(owners_file.read_text()) == {}


async def test_flow_paging_by_proxy_seq_survives_restart_and_skips_a_predecessor(
    jp_fetch, jp_ws_fetch, jp_serverapp, upstream
):
    """60 requests of a real sandbox: pages of 7 by `after=<seq>` return each exactly once, in log order;
    a cursor stays valid for a re-initialised extension (what a restarted server builds); a stream resumes
    after the seq it is given. Destroyed and created again under its name, the sandbox starts with no
    records: its predecessor's never show, in pages or in the stream."""
    api = _fetch_json(jp_fetch)
    ext = jp_serverapp.extension_manager.extension_points["openshell"].app
    assert (await api("sandboxes", method="POST", body={"name": "seq-box"}))[0] == 201
    loop = "\n".join([
        "import sys, urllib.request as u",
        "for p in sys.argv[1:]:",
        f"    try: u.urlopen({upstream.url!r} + p)",
        "    except Exception as e: print(e)",
    ])

    async def run(*paths):
        body = {"argv": ["python3", "-c", loop, *paths]}
        _, out = await api("sandboxes", "seq-box", "exec", method="POST", body=body)
        assert out["returncode"] == 0 and out["stdout"].count("403") == len(paths), out

    async def page(after, limit=7):
        params = {"limit": str(limit), "sandbox": "seq-box"}
        if after is not None:
            params["after"] = str(after)
        return json.loads((await jp_fetch("openshell", "api", "flows", params=params)).body)

    async def page_all(after=0):
        got = []
        while True:
            answer = await page(after)
            assert len(answer["flows"]) <= 7
            got += answer["flows"]
            if not answer["flows"]:
                return got, after
            after = answer["next_after"]

    try:
        await run(*[f"/{i}" for i in range(60)])
        got, cursor = await page_all()
        assert [r["path"] for r in got] == [f"/{i}" for i in range(60)]
        seqs = [r["seq"] for r in got]
        assert seqs == sorted(set(seqs))
        ext.initialize_settings()  # a restarted server: the proxy's seq is still the cursor
        assert [r["path"] for r in (await page(got[29]["seq"], limit=100))["flows"]] == [
            f"/{i}" for i in range(30, 60)]

        ws = await jp_ws_fetch("openshell", "api", "flows", "stream",
                               params={"sandbox": "seq-box", "after": str(got[49]["seq"])})
        streamed = []
        while len(streamed) < 10:
            streamed += json.loads(await asyncio.wait_for(ws.read_message(), 10))["flows"]
        ws.close()
        assert [r["path"] for r in streamed] == [f"/{i}" for i in range(50, 60)]

        # the same name again: a new sandbox with none of the old one's records
        assert (await api("sandboxes", "seq-box", method="DELETE"))[0] == 204
        assert (await api("sandboxes", method="POST", body={"name": "seq-box"}))[0] == 201
        assert (await page(None, limit=100))["flows"] == []
        assert (await page(0, limit=100))["flows"] == []
        ws = await jp_ws_fetch("openshell", "api", "flows", "stream", params={"sandbox": "seq-box"})
        await run("/new")
        message = json.loads(await asyncio.wait_for(ws.read_message(), 10))
        ws.close()
        assert [r["path"] for r in message["flows"]] == ["/new"]
        assert [r["path"] for r in (await page(None, limit=100))["flows"]] == ["/new"]
        assert [r["path"] for r in (await page_all(cursor))[0]] == ["/new"]
        everything = json.loads((await jp_fetch("openshell", "api", "flows", params={"limit": "1000"})).body)
        assert [r["path"] for r in everything["flows"] if r["sandbox"] == "seq-box"] == ["/new"]
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch("openshell", "api", "flows", params={"after": "-1"})
        assert err.value.code == 400
    finally:
        assert (await api("sandboxes", "seq-box", method="DELETE"))[0] == 204
