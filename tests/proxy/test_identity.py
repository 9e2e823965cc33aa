"""Sandbox identity comes from the channel a connection came through, never from an address.

Attack: a host process (root, and a second unprivileged user) connects to the proxy's TCP listener from
any loopback address, including the 127.77.X.Y range sandboxes used to be recognised by, and asks for
what only the sandbox may do: its allowed path and its inference route (the real key injected). It must
be the host caller (deny-all here) every time. Control: the same requests through the sandbox's channel
are allowed and get the key, so the test would see a proxy that took the attacker for the sandbox.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from .test_gateway_client import AgentForwarder, _make_sandbox

KEY = "sk-identity-test-key-77"
HOST_POLICY = "network:\n  egress:\n    - action: deny\n"
SANDBOX_POLICY = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{port}]
      paths:
        - path: "/sandbox/**"
      action: allow
inference:
  routes:
    - caller_pattern: "sbx"
      match:
        hosts: ["inference.local"]
      backend:
        url: "http://127.0.0.1:{port}/v1"
        auth:
          type: bearer
          token_from_secret: "llm-key"
"""
UNPRIV = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
SOURCES = ["127.77.1.2", "127.77.0.1", "127.0.0.1", "127.0.0.9"]
ATTACK = r"""
import socket, sys
port, target = int(sys.argv[1]), sys.argv[2]
for src in sys.argv[3:]:
    for url, host in ((f"http://{target}/sandbox/x", target),
                      ("http://inference.local/v1/models", "inference.local")):
        s = socket.create_connection(("127.0.0.1", port), source_address=(src, 0))
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        print(src, url, data.split(b"\r\n", 1)[0].decode())
"""


@pytest.fixture
def sandboxed(make_proxy, upstream, tmp_path):
    upstream.clear()
    state = tmp_path / "identity-state"
    state.mkdir(mode=0o700)
    proxy = make_proxy(HOST_POLICY, state=state, env={"OPENSHELL_SECRET_LLM_KEY": KEY})
    reg = _make_sandbox(state, "sbx", SANDBOX_POLICY.format(port=upstream.port), created=1.0)
    proxy.client.register_sandbox("sbx", **reg)
    return proxy


def _attack(proxy, upstream, wrap: list[str]) -> list[str]:
    out = subprocess.run([*wrap, sys.executable, "-I", "-c", ATTACK, str(proxy.port),
                          f"127.0.0.1:{upstream.port}", *SOURCES],
                         capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def _key_seen(upstream) -> bool:
    return any(KEY in v for r in upstream.requests for _, v in r.headers)


def test_channel_is_the_sandbox_control(sandboxed, upstream, tmp_path):
    import requests

    reg_socket = tmp_path / "identity-state" / "sandboxes" / "sbx" / "chan" / "proxy.sock"
    agent = AgentForwarder(str(reg_socket))
    try:
        s = requests.Session()
        s.trust_env = False
        via = {"http": f"http://127.0.0.1:{agent.port}"}
        assert s.get(f"http://127.0.0.1:{upstream.port}/sandbox/x", proxies=via).status_code == 200
        assert s.get("http://inference.local/v1/models", proxies=via).status_code == 200
    finally:
        agent.close()
    assert _key_seen(upstream), "through its channel the sandbox gets its route and key"


def test_any_address_is_the_host_caller_as_root(sandboxed, upstream):
    lines = _attack(sandboxed, upstream, [])
    assert len(lines) == 2 * len(SOURCES)
    assert all(line.split()[3] == "403" for line in lines), lines
    assert not upstream.requests and not _key_seen(upstream)
    recs = sandboxed.client.flows(created="any")
    assert recs and all(r["sandbox"] is None and r["decision"] == "deny" for r in recs)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to act as a second (unprivileged) host user")
def test_any_address_is_the_host_caller_as_another_user(sandboxed, upstream):
    lines = _attack(sandboxed, upstream, UNPRIV)
    assert len(lines) == 2 * len(SOURCES)
    assert all(line.split()[3] == "403" for line in lines), lines
    assert not upstream.requests and not _key_seen(upstream)


def test_channel_socket_is_out_of_other_users_reach(sandboxed, tmp_path):
    """The channel lives in the owner's private directories: another user cannot even connect."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to act as a second host user")
    path = tmp_path / "identity-state" / "sandboxes" / "sbx" / "chan" / "proxy.sock"
    probe = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
             "try:\n s.connect(sys.argv[1]); print('connected')\nexcept OSError as e: print(e.errno)")
    out = subprocess.run([*UNPRIV, sys.executable, "-I", "-c", probe, str(path)], capture_output=True,
                         text=True, timeout=30, cwd="/")
    assert out.stdout.strip() == str(13), out  # EACCES: the 0700 state directory
    with socket.socket(socket.AF_UNIX) as s:  # control: the owner can
        s.connect(str(path))


def test_a_channel_connection_keeps_its_identity_whatever_credential_it_sends(sandboxed, upstream, tmp_path):
    """A sandbox client configured with a proxy credential (HTTP_PROXY=http://user:pw@...) is still its
    sandbox: the channel decides, the header is only removed and never reaches the upstream."""
    import requests

    agent = AgentForwarder(str(tmp_path / "identity-state" / "sandboxes" / "sbx" / "chan" / "proxy.sock"))
    try:
        s = requests.Session()
        s.trust_env = False
        r = s.get(f"http://127.0.0.1:{upstream.port}/sandbox/y",
                  proxies={"http": f"http://someone:secret@127.0.0.1:{agent.port}"})
        assert r.status_code == 200
    finally:
        agent.close()
    (rec,) = [r for r in upstream.requests if r.path == "/sandbox/y"]
    assert not [k for k, _ in rec.headers if k.lower() == "proxy-authorization"]


# the sandbox's policy as the host caller's own: its path, and its inference route with the key
HOST_OPEN = SANDBOX_POLICY.replace('"/sandbox/**"', '"/host/**"').replace('"sbx"', '"host"')
OWN_ATTACK = ATTACK.replace("/sandbox/x", "/host/x")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to act as a second (unprivileged) host user")
def test_another_user_is_not_the_host_caller(make_proxy, upstream, tmp_path):
    """Attack: a second local user connects to the proxy's TCP listener, whose host policy (the proxy's
    own user's) allows a path and routes inference with the key. Only the proxy's user and root are its
    host caller: the other user's requests are all refused and never get the key. Control: the same
    requests as root are allowed and get the key."""
    upstream.clear()
    state = tmp_path / "host-state"
    state.mkdir(mode=0o700)
    proxy = make_proxy(HOST_OPEN.format(port=upstream.port), state=state,
                       env={"OPENSHELL_SECRET_LLM_KEY": KEY})

    def attack(wrap: list[str]) -> list[str]:
        out = subprocess.run([*wrap, sys.executable, "-I", "-c", OWN_ATTACK, str(proxy.port),
                              f"127.0.0.1:{upstream.port}", "127.0.0.1", "127.0.0.5"],
                             capture_output=True, text=True, timeout=60, cwd="/")
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    other = attack(UNPRIV)
    assert len(other) == 4 and all(line.split()[3] == "403" for line in other), other
    assert not upstream.requests and not _key_seen(upstream)
    reasons = [r.get("reason", "") for r in proxy.client.flows(created="any")]
    assert reasons and all("uid 65534" in r for r in reasons), reasons
    import requests  # the control: the proxy's own user (root), same requests

    s = requests.Session()
    s.trust_env = False
    via = {"http": f"http://127.0.0.1:{proxy.port}"}
    assert s.get(f"http://127.0.0.1:{upstream.port}/host/x", proxies=via).status_code == 200
    assert s.get("http://inference.local/v1/models", proxies=via).status_code == 200
    assert _key_seen(upstream)
