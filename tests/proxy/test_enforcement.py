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
        assert c.get(f"https://other.example.com:{upstream_tls.port}/v1/users/7").status_code == 403
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
    code, _ = _tunnel(seed_proxy, f"other.example.com:{p}", "api.example.com", f"api.example.com:{p}",
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
