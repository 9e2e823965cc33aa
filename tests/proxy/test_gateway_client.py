"""ProxyClient lifecycle, sandbox registration, the gateway socket and sandbox identity, the CA files
and the secret store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import threading
import time
from pathlib import Path

import certifi
import pytest
import requests

from jupyter_openshell.proxy import ProxyClient, ProxyError
from jupyter_openshell.proxy._secrets import SecretError, SecretStore, env_name

SANDBOX_POLICY = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{port}]
      paths:
        - path: "/sandbox/**"
      action: allow
"""
HOST_POLICY = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{port}]
      paths:
        - path: "/host/**"
      action: allow
"""


class AgentForwarder:
    """What the in-sandbox agent does: a TCP listener whose connections go to the gateway socket."""

    def __init__(self, unix_path: str):
        self.unix_path = unix_path
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX)
            up.connect(self.unix_path)
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


def _make_sandbox(state, name: str, policy: str, created: float | None = None) -> dict:
    """What a runtime does before registering: a channel directory and a policy file; returns the
    registration (keyword arguments of `ProxyClient.register_sandbox`)."""
    d = state / "sandboxes" / name / "chan"
    d.mkdir(parents=True, exist_ok=True)
    (state / "policies").mkdir(exist_ok=True)
    (state / "policies" / f"{name}.yaml").write_text(policy)
    return {"socket_path": d / "proxy.sock", "policy_file": state / "policies" / f"{name}.yaml",
            "created": created}


def _get(agent: AgentForwarder, url: str) -> int:
    with requests.Session() as session:  # a new connection each time
        session.trust_env = False
        return session.get(url, proxies={"http": f"http://127.0.0.1:{agent.port}"}).status_code


def _replace_policy(state, name: str, text: str) -> None:
    path = state / "policies" / f"{name}.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _wait_status(agent: AgentForwarder, url: str, want: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while (code := _get(agent, url)) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return code


def test_sandbox_identity_through_gateway(make_proxy, upstream, tmp_path):
    upstream.clear()
    state = tmp_path / "gw-state"
    state.mkdir(mode=0o700)
    proxy = make_proxy(HOST_POLICY.format(port=upstream.port), state=state)
    reg = _make_sandbox(state, "sb1", SANDBOX_POLICY.format(port=upstream.port))
    info = proxy.client.register_sandbox("sb1", **reg)
    assert info["policy_version"]
    sock_path = state / "sandboxes" / "sb1" / "chan" / "proxy.sock"
    assert info["socket"] == str(sock_path) and stat.S_ISSOCK(sock_path.stat().st_mode)
    agent = AgentForwarder(str(sock_path))
    try:
        s = requests.Session()
        s.trust_env = False
        via_sandbox = {"http": f"http://127.0.0.1:{agent.port}"}
        via_host = {"http": proxy.url}
        base = f"http://127.0.0.1:{upstream.port}"
        assert s.get(base + "/sandbox/a", proxies=via_sandbox).status_code == 200
        assert s.get(base + "/host/a", proxies=via_sandbox).status_code == 403
        assert s.get(base + "/host/a", proxies=via_host).status_code == 200
        assert s.get(base + "/sandbox/a", proxies=via_host).status_code == 403
        recs = proxy.client.flows(sandbox="sb1")
        assert [(r["path"], r["decision"]) for r in recs] == [("/sandbox/a", "allow"), ("/host/a", "deny")]
        assert all(r["client"] == "channel:sb1" for r in recs)
        assert proxy.client.status()["sandboxes"]["sb1"]["socket"] == str(sock_path)
        proxy.client.unregister_sandbox("sb1")
        assert not sock_path.exists()
    finally:
        agent.close()


def test_register_rejects_bad_registration(make_proxy, upstream, tmp_path):
    state = tmp_path / "bad-state"
    state.mkdir(mode=0o700)
    proxy = make_proxy(HOST_POLICY.format(port=upstream.port), state=state)
    reg = _make_sandbox(state, "evil", SANDBOX_POLICY.format(port=1))
    with pytest.raises(ProxyError, match="invalid sandbox name"):
        proxy.client.register_sandbox("Evil!", **reg)
    with pytest.raises(ProxyError, match="invalid sandbox name"):
        proxy.client.register_sandbox("default", **reg)
    with pytest.raises(ProxyError, match="'channel' must be an object"):
        proxy.client._call("POST", "/sandboxes/evil", {"policy_file": "/x", "channel": {"kind": "tcp"}})
    with pytest.raises(ProxyError, match="absolute path"):
        proxy.client._call("POST", "/sandboxes/evil", {"policy_file": "rel.yaml",
                                                       "channel": {"kind": "unix", "socket": "/x"}})
    not_a_socket = tmp_path / "plain-file"
    not_a_socket.write_text("keep me")
    with pytest.raises(ProxyError, match="not a socket"):
        proxy.client.register_sandbox("evil", **{**reg, "socket_path": not_a_socket})
    assert not_a_socket.read_text() == "keep me"
    proxy.client.register_sandbox("evil", **reg)
    with pytest.raises(ProxyError, match="already sandbox 'evil'"):
        proxy.client.register_sandbox("other", **{**reg, "created": 9.0})
    assert set(proxy.client.status()["sandboxes"]) == {"evil"}


def test_ensure_running_stop_and_ca_files(tmp_path):
    state = tmp_path / "client-state"
    state.mkdir(mode=0o700)
    client = ProxyClient(state)
    with pytest.raises(ProxyError, match="not answering"):
        client.status()
    info = client.ensure_running()
    try:
        run = json.loads((state / "run" / "proxy.json").read_text())
        assert run["pid"] == info["pid"] and info["listen"].startswith("127.0.0.1:")
        assert client.ensure_running()["pid"] == info["pid"]  # idempotent
        assert (state / "policies" / "default.yaml").exists()
        ca = state / "ca"
        assert stat.S_IMODE((ca / "mitmproxy-ca.pem").stat().st_mode) == 0o600
        assert stat.S_IMODE((state / "run" / "proxy-control.sock").stat().st_mode) == 0o600
        bundle = (ca / "ca-bundle.pem").read_text()
        ours = (ca / "mitmproxy-ca-cert.pem").read_text()
        assert ours in bundle and Path(certifi.where()).read_text()[:2000] in bundle
        assert "PRIVATE KEY" not in bundle
    finally:
        assert client.stop()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{info['pid']}"):
        time.sleep(0.05)
    assert not client.is_running()


def test_secret_store(tmp_path):
    d = tmp_path / "secrets"
    d.mkdir(mode=0o700)
    store = SecretStore(d, environ={env_name("my-key.v2"): "from-env"})
    assert env_name("my-key.v2") == "OPENSHELL_SECRET_MY_KEY_V2"
    assert store.get("my-key.v2") == "from-env"
    (d / "file-key").write_text("s3cret\n")
    (d / "file-key").chmod(0o600)
    assert store.get("file-key") == "s3cret"
    (d / "file-key").chmod(0o640)
    with pytest.raises(SecretError, match="chmod 600") as err:
        store.get("file-key")
    assert "s3cret" not in str(err.value)
    with pytest.raises(SecretError, match="not found"):
        store.get("absent")
    with pytest.raises(SecretError, match="invalid secret name"):
        store.get("../etc/passwd")


def test_two_workers_share_registry_and_reload(make_proxy, upstream, tmp_path):
    upstream.clear()
    state = tmp_path / "workers-state"
    state.mkdir(mode=0o700)
    proxy = make_proxy(HOST_POLICY.format(port=upstream.port), state=state, workers=2)
    reg = _make_sandbox(state, "sbw", SANDBOX_POLICY.format(port=upstream.port))
    proxy.client.register_sandbox("sbw", **reg)
    agent = AgentForwarder(str(state / "sandboxes" / "sbw" / "chan" / "proxy.sock"))
    base = f"http://127.0.0.1:{upstream.port}"

    def fresh_get(url: str) -> requests.Response:
        with requests.Session() as session:  # a new connection each time
            session.trust_env = False
            return session.get(url, proxies={"http": f"http://127.0.0.1:{agent.port}"})

    try:
        for _ in range(12):  # a new connection each time: the gateway spreads them over both processes
            assert fresh_get(base + "/sandbox/x").status_code == 200
        pids = {f["id"].split("-")[1] for f in proxy.client.flows(sandbox="sbw")}
        assert len(pids) == 2, "both processes served the sandbox with its policy"
        status = proxy.client.status()
        old = status["policies"]["sbw"]["version"]
        assert [w["index"] for w in status["worker_policies"]] == [0, 1] and status["policies_agree"]
        assert status["policies"]["sbw"]["worker_versions"] == [old, old]
        (state / "policies" / "sbw.yaml").write_text(SANDBOX_POLICY.format(port=upstream.port).replace(
            "/sandbox/**", "/sandbox/only"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # each worker reports its own version in the status
            versions = proxy.client.status()["policies"]["sbw"]["worker_versions"]
            if old not in versions:
                break
            time.sleep(0.05)
        status = proxy.client.status()
        new = status["policies"]["sbw"]["version"]
        assert new != old and status["policies"]["sbw"]["worker_versions"] == [new, new]
        assert status["policies_agree"]
        since = time.time()
        for _ in range(12):
            assert fresh_get(base + "/sandbox/x").status_code == 403
        denials = [f for f in proxy.client.flows(sandbox="sbw", since=since) if f["decision"] == "deny"]
        assert len({f["id"].split("-")[1] for f in denials}) == 2, "both workers apply the new version"
        assert {f["policy_version"] for f in denials} == {new}
        worker = status["worker_policies"][1]["pid"]
        os.kill(worker, signal.SIGSTOP)  # a worker that does not answer is visible in the status
        try:
            stuck = proxy.client.status()
        finally:
            os.kill(worker, signal.SIGCONT)
        assert not stuck["policies_agree"] and "did not answer" in stuck["worker_policies"][1]["error"]
        assert stuck["policies"]["sbw"]["worker_versions"] == [new, None]
        again = proxy.client.status()  # its late answer is skipped, not taken for this one
        assert again["policies_agree"] and again["worker_policies"][1]["pid"] == worker
    finally:
        agent.close()


def test_second_proxy_on_same_state_refuses(make_proxy, upstream, tmp_path):
    state = tmp_path / "dup-state"
    state.mkdir(mode=0o700)
    first = make_proxy(HOST_POLICY.format(port=upstream.port), state=state)
    with pytest.raises(RuntimeError, match="another proxy already serves"):
        make_proxy(HOST_POLICY.format(port=upstream.port), state=state)
    assert first.client.status()["pid"] == first.proc.pid


@pytest.mark.parametrize("workers", [1, 2])
def test_sandbox_recreated_under_its_name_without_unregister(make_proxy, upstream, tmp_path, workers):
    """The proxy never heard the first sandbox go (its unregister was lost); a new sandbox of the same
    name (new channel directory) registers: it gets a fresh gateway, its policy changes apply, and a
    connection of the first one still open serves no policy."""
    state = tmp_path / "re-state"
    state.mkdir(mode=0o700)
    proxy = make_proxy(HOST_POLICY.format(port=upstream.port), state=state, workers=workers)
    allow = SANDBOX_POLICY.format(port=upstream.port)
    tight = allow.replace("/sandbox/**", "/sandbox/only")
    url = f"http://127.0.0.1:{upstream.port}/sandbox/x"
    proxy.client.register_sandbox("sbr", **_make_sandbox(state, "sbr", allow, created=1.5))
    old_conn = socket.socket(socket.AF_UNIX)
    old_conn.connect(str(state / "sandboxes" / "sbr" / "chan" / "proxy.sock"))  # stays open
    agent = AgentForwarder(str(state / "sandboxes" / "sbr" / "chan" / "proxy.sock"))
    assert _get(agent, url) == 200
    agent.close()
    shutil.rmtree(state / "sandboxes" / "sbr")  # destroyed; the proxy was not told
    info = proxy.client.register_sandbox("sbr", **_make_sandbox(state, "sbr", allow, created=2.5))
    assert info["created"] == 2.5
    agent = AgentForwarder(info["socket"])
    try:
        assert _get(agent, url) == 200
        for text, want in ((tight, 403), (allow, 200), (tight, 403)):
            _replace_policy(state, "sbr", text)
            assert _wait_status(agent, url, want) == want
        recs = proxy.client.flows(sandbox="sbr", created="any")
        assert all(r["client"] == "channel:sbr" for r in recs)
        assert recs[0]["sandbox_created"] == 1.5 and recs[-1]["sandbox_created"] == 2.5
        # a late unregister of the first sandbox must not take the name from the second one
        with pytest.raises(ProxyError, match="registered again"):
            proxy.client.unregister_sandbox("sbr", created=1.5)
        assert _get(agent, url) == 403 and "sbr" in proxy.client.status()["sandboxes"]
        old_conn.sendall(f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{upstream.port}\r\nConnection: close\r\n\r\n"
                         .encode())
        answer = b""
        while chunk := old_conn.recv(65536):  # the first sandbox's connection serves no policy now
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 403") and b"no longer registered" in answer
        proxy.client.unregister_sandbox("sbr", created=2.5)
        assert "sbr" not in proxy.client.status()["sandboxes"]
    finally:
        old_conn.close()
        agent.close()


def test_stale_registration_never_holds_a_channel(make_proxy, upstream, tmp_path):
    """A sandbox gone without an unregister keeps no channel: a new sandbox given its socket registers."""
    state = tmp_path / "stale-state"
    state.mkdir(mode=0o700)
    proxy = make_proxy(HOST_POLICY.format(port=upstream.port), state=state)
    allow = SANDBOX_POLICY.format(port=upstream.port)
    reg = _make_sandbox(state, "gone", allow)
    proxy.client.register_sandbox("gone", **reg)
    proxy.client.unregister_sandbox("gone")
    info = proxy.client.register_sandbox("fresh", **{**reg, "policy_file": _make_sandbox(
        state, "fresh", allow)["policy_file"]})
    assert set(proxy.client.status()["sandboxes"]) == {"fresh"}
    agent = AgentForwarder(info["socket"])
    try:
        assert _get(agent, f"http://127.0.0.1:{upstream.port}/sandbox/x") == 200
        assert proxy.client.flows(sandbox="fresh")[-1]["decision"] == "allow"
    finally:
        agent.close()
