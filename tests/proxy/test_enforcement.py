"""End-to-end egress enforcement through the real proxy: seed policy, normalisation attacks, name
agreement (Host / CONNECT / SNI), method override, DNS and address checks. Real clients, real servers."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl

import httpx
import pytest
import requests

from .conftest import curl

SEED = """\
network:
  egress:
    - host: "api.example.com"
      ports: [{port}, {tls_port}]
      paths:
        - path: "/v1/users/*"
          methods: ["GET"]
        - path: "/v1/data"
          methods: ["GET", "HEAD"]
      addresses: ["127.0.0.1"]  # the test upstreams live on loopback, which is refused unless named
      action: allow
    - host: "127.0.0.1"
      ports: [{port}, {tls_port}]
      paths:
        - path: "/direct/*"
          methods: ["GET"]
      action: allow
    - action: deny
"""
PINS = {"api.example.com": "127.0.0.1", "other.example.com": "127.0.0.1", "metadata.test": "169.254.169.254"}


@pytest.fixture
def seed_proxy(make_proxy, upstream, upstream_tls):
    upstream.clear()
    upstream_tls.clear()
    return make_proxy(SEED.format(port=upstream.port, tls_port=upstream_tls.port), resolve=PINS)


def _proxies(proxy):
    return {"http": proxy.url, "https": proxy.url}


def test_seed_policy_requests_http(seed_proxy, upstream):
    s = requests.Session()
    s.trust_env = False
    base = f"http://api.example.com:{upstream.port}"
    r = s.get(base + "/v1/users/1", proxies=_proxies(seed_proxy))
    assert r.status_code == 200
    assert r.json()["path"] == "/v1/users/1"
    r = s.post(base + "/v1/users/1", data=b"x", proxies=_proxies(seed_proxy))
    assert r.status_code == 403
    body = r.json()
    assert set(body) >= {"error", "method", "host", "path", "policy_version", "rule", "hint"}
    assert (body["method"], body["host"], body["path"]) == ("POST", "api.example.com", "/v1/users/1")
    assert "POST" in body["hint"] and "/v1/users/1" in body["hint"]
    assert s.head(base + "/v1/data", proxies=_proxies(seed_proxy)).status_code == 200
    assert s.get(base + "/v1/other", proxies=_proxies(seed_proxy)).status_code == 403
    r = s.get(f"http://other.example.com:{upstream.port}/v1/users/1", proxies=_proxies(seed_proxy))
    assert r.status_code == 403 and r.json()["host"] == "other.example.com"
    seen = [(q.method, q.path) for q in upstream.requests]
    assert seen == [("GET", "/v1/users/1"), ("HEAD", "/v1/data")]


def test_seed_policy_https_httpx_and_curl(seed_proxy, upstream_tls):
    base = f"https://api.example.com:{upstream_tls.port}"
    ctx = ssl.create_default_context(cafile=str(seed_proxy.ca_bundle))
    with httpx.Client(proxy=seed_proxy.url, verify=ctx, trust_env=False) as c:
        assert c.get(base + "/v1/users/7").status_code == 200
        r = c.delete(base + "/v1/users/7")
        assert r.status_code == 403 and r.json()["method"] == "DELETE"
        with pytest.raises(httpx.ProxyError, match="403"):  # refused at CONNECT: no rule names it
            c.get(f"https://other.example.com:{upstream_tls.port}/v1/users/7")
    code, _ = curl(seed_proxy, base + "/v1/data", "-I")
    assert code == 200
    code, body = curl(seed_proxy, base + "/v1/users/1", "-X", "POST", "-d", "x")
    assert code == 403 and json.loads(body)["rule"]
    seen = [(q.method, q.path) for q in upstream_tls.requests]
    assert seen == [("GET", "/v1/users/7"), ("HEAD", "/v1/data")]


@pytest.mark.parametrize(("path", "status", "forwarded"), [
    ("/v1/users/./1", 200, "/v1/users/1"),
    ("//v1//users/1", 200, "/v1/users/1"),
    ("/v1/users/%31", 200, "/v1/users/1"),
    ("/v1/users/../../admin", 403, None),
    ("/v1/users/1/..;/../admin", 400, None),
    ("/v1/users/..%2f..%2fadmin", 400, None),
    ("/v1/users/a%5c..%5cadmin", 400, None),
    ("/v1/users/%00", 400, None),
    ("/v1/users/%zz", 400, None),
    ("/v1/users/%c0%af", 400, None),
])
def test_path_normalisation_attacks(seed_proxy, upstream, path, status, forwarded):
    code, body = curl(seed_proxy, f"http://api.example.com:{upstream.port}{path}", "--path-as-is")
    assert code == status, body
    if forwarded:
        assert upstream.requests[-1].path == forwarded  # the bytes evaluated are the bytes forwarded
    else:
        assert upstream.requests == []


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]"])
def test_ip_spellings_are_the_ip(seed_proxy, upstream, host):
    code, body = curl(seed_proxy, f"http://{host}:{upstream.port}/secret")
    assert code in (400, 403), body
    if code == 403:
        assert json.loads(body)["host"] == "127.0.0.1"
    code, _ = curl(seed_proxy, f"http://{host}:{upstream.port}/direct/a")
    assert code == 200
    assert [q.path for q in upstream.requests] == ["/direct/a"]


def test_host_header_must_match_target(seed_proxy, upstream):
    code, body = curl(seed_proxy, f"http://127.0.0.1:{upstream.port}/direct/x", "-H",
                      "Host: api.example.com")
    assert code == 400 and "Host header" in json.loads(body)["error"]
    code, _ = curl(seed_proxy, f"http://api.example.com:{upstream.port}/v1/users/1", "-H",
                   f"Host: evil.example.net:{upstream.port}")
    assert code == 400
    assert upstream.requests == []


def _tunnel(proxy, connect: str, sni: str, host_header: str, path: str) -> tuple[int, bytes]:
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    raw.sendall(f"CONNECT {connect} HTTP/1.1\r\nHost: {connect}\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context(cafile=str(proxy.ca_bundle))
    ctx.check_hostname = False
    tls = ctx.wrap_socket(raw, server_hostname=sni)
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := tls.recv(65536):
        data += chunk
    tls.close()
    return int(data.split(b" ", 2)[1]), data


def test_connect_sni_and_host_must_agree(seed_proxy, upstream_tls):
    p = upstream_tls.port
    ok, _ = _tunnel(seed_proxy, f"api.example.com:{p}", "api.example.com", f"api.example.com:{p}",
                    "/v1/users/1")
    assert ok == 200
    code, body = _tunnel(seed_proxy, f"api.example.com:{p}", "other.example.com", f"api.example.com:{p}",
                         "/v1/users/1")
    assert code == 400 and b"SNI" in body
    code, _ = _tunnel(seed_proxy, f"127.0.0.1:{p}", "api.example.com", f"api.example.com:{p}",
                      "/v1/users/1")
    assert code == 400
    code, _ = _tunnel(seed_proxy, f"api.example.com:{p}", "api.example.com", f"other.example.com:{p}",
                      "/v1/users/1")
    assert code == 400
    assert [q.path for q in upstream_tls.requests] == ["/v1/users/1"]


def test_method_override_is_refused(seed_proxy, upstream):
    url = f"http://api.example.com:{upstream.port}/v1/users/1"
    for args in (["-H", "X-HTTP-Method-Override: DELETE"], ["-H", "X-Method-Override: POST"]):
        code, _ = curl(seed_proxy, url, *args)
        assert code == 403
    code, _ = curl(seed_proxy, url + "?_method=DELETE")
    assert code == 403
    assert upstream.requests == []


def test_denied_names_are_never_resolved(seed_proxy, upstream):
    """The proxy logs every lookup it makes ("resolve NAME"); denied names never appear."""
    code, _ = curl(seed_proxy, f"http://other.example.com:{upstream.port}/v1/users/1")
    assert code == 403
    code, _ = curl(seed_proxy, f"http://api.example.com:{upstream.port}/v1/users/1")
    assert code == 200
    log = seed_proxy.stderr()
    assert "resolve api.example.com" in log  # lookups are visible ...
    assert "resolve other.example.com" not in log  # ... and the denied name was never looked up
    assert seed_proxy.client.status()["resolver_lookups"] == 1


ADDR_POLICY = """\
network:
  egress:
    - host: "localhost"
      ports: [{port}]
      action: allow
    - host: "metadata.test"
      action: allow
    - host: "*.example.com"
      ports: [{port}]
      action: allow
"""


def test_loopback_and_metadata_refused_after_allow(make_proxy, upstream):
    upstream.clear()
    proxy = make_proxy(ADDR_POLICY.format(port=upstream.port), resolve=PINS)
    code, body = curl(proxy, f"http://localhost:{upstream.port}/x")
    assert code == 403 and "loopback" in json.loads(body)["error"]
    code, body = curl(proxy, "http://metadata.test/latest/meta-data/")
    assert code == 403 and "169.254.169.254" in json.loads(body)["error"]
    code, body = curl(proxy, f"http://api.example.com:{upstream.port}/x")  # a wildcard is not explicit
    assert code == 403 and "loopback" in json.loads(body)["error"]
    assert upstream.requests == []
    flows = proxy.client.flows()
    assert [f["decision"] for f in flows] == ["deny"] * 3
    assert all(f["rule"] == "address check" for f in flows)


def test_raw_tcp_through_connect_never_reaches_upstream(make_proxy):
    """Non-HTTP bytes inside an allowed CONNECT tunnel are killed, not relayed."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(2)
    port = listener.getsockname()[1]
    proxy = make_proxy(f'network:\n  egress:\n    - host: "127.0.0.1"\n      ports: [{port}]\n'
                       '      action: allow\n')
    conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    conn.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    assert conn.recv(4096).startswith(b"HTTP/1.1 200")
    conn.sendall(b"\x00\x01SSH-2.0-raw-protocol\r\n")
    with contextlib.suppress(ConnectionResetError):
        assert conn.recv(4096) == b""  # the proxy closes the tunnel
    with pytest.raises(TimeoutError):
        listener.accept()  # nothing ever connected upstream
    listener.close()


def _connect(proxy, authority: str) -> tuple[bytes, bytes]:
    """Send a CONNECT and read what comes back before any TLS: (status line, JSON body)."""
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    raw.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data and (chunk := raw.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next((ln.split(b":")[1] for ln in head.split(b"\r\n")
                       if ln.lower().startswith(b"content-length:")), b"0"))
    while len(body) < length and (chunk := raw.recv(65536)):
        body += chunk
    raw.close()
    return head.split(b"\r\n")[0], body


def test_connect_to_never_allowed_host_is_refused_before_tls(make_proxy, upstream):
    """No rule could allow denied.test: the CONNECT itself gets 403 + the JSON denial (no TLS handshake,
    no DNS lookup, no upstream connection); hosts some rule may allow are still tunnelled and judged."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    proxy = make_proxy(SEED.format(port=upstream.port, tls_port=port),
                       resolve={"denied.test": "127.0.0.1", "api.example.com": "127.0.0.1"})
    try:
        status, body = _connect(proxy, f"Denied.Test.:{port}")
        assert status.startswith(b"HTTP/1.1 403")
        info = json.loads(body)
        assert (info["method"], info["host"], info["path"]) == ("CONNECT", "denied.test", "/")
        assert info["rule"] == "network.egress[2] (deny, line 18): any host, any port"  # the final deny
        assert info["policy_version"] and "denied.test" in info["hint"]
        assert info["error"].startswith("blocked by policy")
        code, _ = curl(proxy, f"https://denied.test:{port}/v1/users/1", "-w", "\n%{http_connect}")
        assert code == 403  # the answer curl got to its CONNECT
        # the port is part of "could ever allow": api.example.com is allowed on other ports only
        status, _ = _connect(proxy, f"api.example.com:{port + 1 if port < 65535 else port - 1}")
        assert status.startswith(b"HTTP/1.1 403")
        status, _ = _connect(proxy, f"api.example.com:{port}")  # some rule may allow it: tunnelled
        assert status.startswith(b"HTTP/1.1 200")
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever connected upstream
        assert proxy.client.status()["resolver_lookups"] == 0
        assert "resolve denied.test" not in proxy.stderr()
        flows = [f for f in proxy.client.flows() if f["host"] == "denied.test"]
        assert flows and all((f["method"], f["decision"], f["status"]) == ("CONNECT", "deny", 403)
                             for f in flows)
    finally:
        listener.close()


def test_plain_http_to_never_allowed_host_never_connects(make_proxy):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    proxy = make_proxy(SEED.format(port=1, tls_port=2), resolve={"denied.test": "127.0.0.1"})
    try:
        code, body = curl(proxy, f"http://denied.test:{port}/a/../b?q=1")
        assert code == 403
        info = json.loads(body)
        assert (info["method"], info["host"], info["path"]) == ("GET", "denied.test", "/b")
        with pytest.raises(TimeoutError):
            listener.accept()
        assert proxy.client.status()["resolver_lookups"] == 0
    finally:
        listener.close()


def test_audit_mode_tunnels_a_never_allowed_host_and_logs_it(make_proxy, upstream_tls):
    upstream_tls.clear()
    proxy = make_proxy("mode: audit\n" + SEED.format(port=1, tls_port=2),
                       resolve={"denied.test": "127.0.0.1"})
    status, _ = _connect(proxy, f"denied.test:{upstream_tls.port}")
    assert status.startswith(b"HTTP/1.1 200")
    flows = [f for f in proxy.client.flows() if f["host"] == "denied.test"]
    assert flows == []  # nothing judged yet: the tunnel is open, no request went through it
    code, _ = curl(proxy, f"https://denied.test:{upstream_tls.port}/x")
    assert code == 403  # audit lets it through: the loopback address check (not the policy) refuses
    rec = [f for f in proxy.client.flows() if f["host"] == "denied.test"][-1]
    assert rec["method"] == "GET" and rec["rule"] == "address check"
