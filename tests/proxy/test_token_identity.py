"""Identity by credential (channel kind "token", the Kubernetes backend's): a connection is a sandbox's
only when its first request presents that sandbox's credential FROM that sandbox's registered source
address. Loopback addresses 127.0.0.2..5 stand in for pod IPs (never any other address).

Attacks, each through the real proxy: a stolen credential used from another source; the credential of
one sandbox from the source of another; a connection that switches identity with a later header (from
a sandbox, and from the host caller); another (unprivileged) host user with a credential from a source
it is not registered for; the right source without a credential; a forged or malformed header. The
credential must never reach an upstream. Controls: the right credential from the right source gets the
sandbox's policy (plain HTTP, CONNECT + TLS, Bearer, with workers); stock mitmproxy forwards the header
upstream (so the header check sees a leak where the stripping is absent).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import sys

import pytest

from .conftest import curl

HOST_POLICY = "network:\n  egress:\n    - action: deny\n"
POLICY = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{port}]
      paths:
        - path: "/{prefix}/**"
      action: allow
"""
TOKEN_A = "tok-a-" + "1" * 40
TOKEN_B = "tok-b-" + "2" * 40
SRC_A, SRC_B, SRC_OTHER = "127.0.0.2", "127.0.0.3", "127.0.0.4"
UNPRIV = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _basic(token: str, user: str = "openshell") -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def pods(request, make_proxy, upstream, tmp_path):
    """A proxy with two token sandboxes: pod-a (credential A, source 127.0.0.2, may GET /a/**) and pod-b
    (credential B, source 127.0.0.3, may GET /b/**); the host caller may do nothing."""
    upstream.clear()
    state = tmp_path / f"token-state-{request.param}"
    state.mkdir(mode=0o700)
    proxy = make_proxy(HOST_POLICY, state=state, workers=request.param)
    for name, token, src, prefix in (("pod-a", TOKEN_A, SRC_A, "a"), ("pod-b", TOKEN_B, SRC_B, "b")):
        (state / "policies").mkdir(exist_ok=True)
        policy = state / "policies" / f"{name}.yaml"
        policy.write_text(POLICY.format(port=upstream.port, prefix=prefix))
        reg = proxy.client.register_sandbox(name, policy_file=policy, created=1.0, token_sha256=_sha(token),
                                            source=src)
        assert reg["channel"] == "token" and reg["source"] == src and reg["socket"] is None
    return proxy


def _raw(proxy, source: str, requests_: list[bytes]) -> list[str]:
    """Send `requests_` one after the other on ONE connection from `source`; the status lines answered."""
    out = []
    with socket.create_connection(("127.0.0.1", proxy.port), source_address=(source, 0), timeout=10) as s:
        f = s.makefile("rb")
        for raw in requests_:
            try:
                s.sendall(raw)
                line = f.readline().decode().strip()
            except OSError:  # (reset: the proxy closed the connection)
                out.append("closed")
                break
            if not line:
                out.append("closed")
                break
            out.append(line)
            length = 0
            while (header := f.readline()) not in (b"\r\n", b""):
                if header.lower().startswith(b"content-length:"):
                    length = int(header.split(b":")[1])
            f.read(length)
    return out


def _get(port: int, path: str, auth: str | None = None, *, close: bool = False) -> bytes:
    head = f"GET http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if auth:
        head += f"Proxy-Authorization: {auth}\r\n"
    if close:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode()


def _status(line: str) -> int:
    return int(line.split()[1]) if line.startswith("HTTP/") else 0


def test_right_credential_from_right_source_gets_the_sandbox_policy_control(pods, upstream):
    lines = _raw(pods, SRC_A, [_get(upstream.port, "/a/x", _basic(TOKEN_A)),
                               _get(upstream.port, "/b/x", _basic(TOKEN_A))])
    assert [_status(x) for x in lines] == [200, 403], lines  # pod-a's policy: /a/ yes, /b/ no
    lines = _raw(pods, SRC_B, [_get(upstream.port, "/b/x", "Bearer " + TOKEN_B)])
    assert _status(lines[0]) == 200, lines
    recs = [r for r in pods.client.flows(created="any") if r["path"] in ("/a/x", "/b/x")]
    assert [(r["sandbox"], r["path"], r["decision"]) for r in recs] == [
        ("pod-a", "/a/x", "allow"), ("pod-a", "/b/x", "deny"), ("pod-b", "/b/x", "allow")]


def test_stolen_credential_from_another_source_is_refused(pods, upstream):
    for source, token in ((SRC_OTHER, TOKEN_A), ("127.0.0.1", TOKEN_A), (SRC_B, TOKEN_A), (SRC_A, TOKEN_B)):
        lines = _raw(pods, source, [_get(upstream.port, "/a/x", _basic(token)),
                                    _get(upstream.port, "/b/x", _basic(token))])
        assert _status(lines[0]) == 407, (source, lines)
        assert lines[1:] in ([], ["closed"]) or _status(lines[1]) == 407, (source, lines)
    assert upstream.requests == []
    refused = [r for r in pods.client.flows(created="any") if r["rule"] == "identity"]
    assert refused and all(r["decision"] == "deny" and r["status"] == 407 and r["sandbox"] is None
                           for r in refused)
    assert all(TOKEN_A not in str(r) and TOKEN_B not in str(r) for r in pods.client.flows(created="any"))


def test_source_without_credential_is_only_the_host_caller(pods, upstream):
    lines = _raw(pods, SRC_A, [_get(upstream.port, "/a/x")])
    assert _status(lines[0]) == 403, lines  # the host caller's deny-all, not pod-a's policy
    assert upstream.requests == []


@pytest.mark.parametrize("auth", [
    _basic(TOKEN_A, user="admin"), _basic("tok-unknown"), "Basic !!notbase64", "Digest " + TOKEN_A,
    "Bearer", "Bearer " + TOKEN_A.upper()])
def test_forged_or_malformed_credentials_are_refused(pods, upstream, auth):
    lines = _raw(pods, SRC_A, [_get(upstream.port, "/a/x", auth)])
    assert _status(lines[0]) == 407, lines
    assert upstream.requests == []


def test_two_credential_headers_are_refused(pods, upstream):
    raw = (f"GET http://127.0.0.1:{upstream.port}/a/x HTTP/1.1\r\nHost: 127.0.0.1:{upstream.port}\r\n"
           f"Proxy-Authorization: {_basic(TOKEN_B)}\r\nProxy-Authorization: {_basic(TOKEN_A)}\r\n\r\n")
    assert _status(_raw(pods, SRC_A, [raw.encode()])[0]) == 407
    assert upstream.requests == []


def test_bound_connection_cannot_switch_identity(pods, upstream):
    lines = _raw(pods, SRC_A, [_get(upstream.port, "/a/x", _basic(TOKEN_A)),
                               _get(upstream.port, "/b/x", _basic(TOKEN_B)),
                               _get(upstream.port, "/b/x")])
    assert _status(lines[0]) == 200, lines
    assert _status(lines[1]) == 407, lines  # not pod-b's /b/, whatever the header says
    assert lines[2:] in ([], ["closed"]) or _status(lines[2]) == 407, lines
    assert [r.path for r in upstream.requests] == ["/a/x"]


def test_host_caller_connection_cannot_become_a_sandbox(pods, upstream):
    lines = _raw(pods, SRC_A, [_get(upstream.port, "/a/x"), _get(upstream.port, "/a/x", _basic(TOKEN_A))])
    assert _status(lines[0]) == 403, lines
    assert lines[1] == "closed" or _status(lines[1]) == 407, lines
    assert upstream.requests == []


def test_credential_never_reaches_the_upstream(pods, upstream):
    lines = _raw(pods, SRC_A, [_get(upstream.port, "/a/1", _basic(TOKEN_A)),
                               _get(upstream.port, "/a/2", _basic(TOKEN_A)), _get(upstream.port, "/a/3")])
    assert [_status(x) for x in lines] == [200, 200, 200], lines
    assert len(upstream.requests) == 3
    for rec in upstream.requests:
        assert rec.header("proxy-authorization") is None
        assert not any(TOKEN_A in v or base64.b64encode(f"openshell:{TOKEN_A}".encode()).decode() in v
                       for v in rec.header_values())


def test_stock_mitmproxy_forwards_the_header_control(stock_proxy, upstream):
    """The control of the test above: a proxy that does not strip the header leaks it upstream."""
    upstream.clear()
    with socket.create_connection(("127.0.0.1", stock_proxy.port), timeout=10) as s:
        s.sendall(_get(upstream.port, "/a/x", _basic(TOKEN_A), close=True))
        while s.recv(65536):
            pass
    assert upstream.requests and upstream.requests[0].header("proxy-authorization") == _basic(TOKEN_A)


def test_https_through_connect_with_credential_in_the_proxy_url(pods, upstream_tls, test_ca, tmp_path):
    """What a pod's client does with HTTPS_PROXY=http://openshell:TOKEN@proxy: the credential on the
    CONNECT binds the tunnel, the requests inside get the sandbox's policy and carry no credential."""
    upstream_tls.clear()
    policy = pods.state_dir / "policies" / "pod-a.yaml"
    tmp = policy.with_suffix(".tmp")
    tmp.write_text(POLICY.format(port=upstream_tls.port, prefix="a"))
    os.replace(tmp, policy)
    pods.client.reload()
    url = f"https://127.0.0.1:{upstream_tls.port}/a/tls"
    proxy_url = f"http://openshell:{TOKEN_A}@127.0.0.1:{pods.port}"
    base = ["curl", "-sS", "--max-time", "20", "--noproxy", "", "--cacert", str(pods.ca_bundle),
            "-w", "\n%{http_code}", "--interface"]
    ok = subprocess.run([*base, SRC_A, "-x", proxy_url, url], capture_output=True, text=True, timeout=30)
    stolen = subprocess.run([*base, SRC_OTHER, "-x", proxy_url, url], capture_output=True, text=True,
                            timeout=30)
    assert ok.stdout.rsplit("\n", 1)[-1] == "200", ok
    assert "407" in stolen.stderr + stolen.stdout, stolen
    assert [r.path for r in upstream_tls.requests] == ["/a/tls"]
    assert upstream_tls.requests[0].header("proxy-authorization") is None
    # without the credential the same tunnel is the host caller's (deny-all)
    assert curl(pods, url, "--interface", SRC_A)[0] != 200


def test_unregistered_sandbox_credential_is_refused(pods, upstream):
    pods.client.unregister_sandbox("pod-a")
    assert _status(_raw(pods, SRC_A, [_get(upstream.port, "/a/x", _basic(TOKEN_A))])[0]) == 407
    assert upstream.requests == []


def test_registration_refuses_a_shared_credential_and_bad_fields(pods, tmp_path):
    from jupyter_openshell.proxy import ProxyError

    policy = pods.state_dir / "policies" / "pod-a.yaml"
    with pytest.raises(ProxyError, match="credential of its own"):
        pods.client.register_sandbox("pod-c", policy_file=policy, token_sha256=_sha(TOKEN_A),
                                     source=SRC_OTHER)
    with pytest.raises(ProxyError, match="token_sha256"):
        pods.client.register_sandbox("pod-c", policy_file=policy, token_sha256="abc", source=SRC_OTHER)
    with pytest.raises(ProxyError, match="source"):
        pods.client.register_sandbox("pod-c", policy_file=policy, token_sha256=_sha("x"), source="0.0.0.0")


UNPRIV_ATTACK = r"""
import base64, socket, sys
port, upstream, source, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
auth = base64.b64encode(f"openshell:{token}".encode()).decode()
s = socket.create_connection(("127.0.0.1", port), source_address=(source, 0), timeout=10)
s.sendall(f"GET http://127.0.0.1:{upstream}/b/x HTTP/1.1\r\nHost: 127.0.0.1:{upstream}\r\n"
          f"Proxy-Authorization: Basic {auth}\r\nConnection: close\r\n\r\n".encode())
print(s.makefile("rb").readline().decode().split()[1])
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to act as a second (unprivileged) host user")
def test_unprivileged_user_cannot_use_a_credential_from_another_source(pods, upstream):
    def attack(source: str, token: str) -> str:
        out = subprocess.run([*UNPRIV, sys.executable, "-I", "-c", UNPRIV_ATTACK, str(pods.port),
                              str(upstream.port), source, token], capture_output=True, text=True, timeout=30,
                             cwd="/")
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert attack(SRC_A, TOKEN_B) == "407"  # pod-b's credential from pod-a's address
    assert attack(SRC_OTHER, TOKEN_B) == "407"
    assert upstream.requests == []
    assert attack(SRC_B, TOKEN_B) == "200"  # control: pod-b's own address with its credential
