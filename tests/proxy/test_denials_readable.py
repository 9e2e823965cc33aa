"""HTTPS denials a client can read (issue 8, item 7), with curl, requests, httpx and pip.

* A host some rule could allow: the tunnel is intercepted and the denied request answered inside it,
  so the client reads the JSON body, and the reason phrase ("Blocked by OpenShell policy: ...").
* A host no rule could ever allow: the CONNECT is refused before any TLS. Clients never show a
  CONNECT response's body, so the reason also goes where they do look: the status line's reason
  phrase (requests, pip and httpx put it in their ProxyError; curl -v prints it) and the
  `X-OpenShell-Denied` / `X-OpenShell-Rule` headers (curl -v prints them).
The control is a proxy answering a bare `403 Forbidden`: the same assertions fail against it."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys

import httpx
import pytest
import requests

from .conftest import curl
from .rawserver import RawConn, RawServer

POLICY = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{port}]
      paths:
        - path: "/simple/**"
          methods: ["GET"]
      action: allow
    - action: deny
"""
NEVER = "other.example.com:443"
NEVER_REASON = "no rule allows any request to other.example.com:443"


@pytest.fixture
def proxy(make_proxy, upstream_tls):
    upstream_tls.clear()
    return make_proxy(POLICY.format(port=upstream_tls.port))


def _session(proxy_url: str, ca) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.proxies = {"https": proxy_url}
    s.verify = str(ca) if ca else True
    return s


def _pip(proxy_url: str, ca, index: str, dest, *args: str) -> str:
    """`pip download` through the proxy with the CA variables a sandbox gets (pip's truststore reads
    SSL_CERT_FILE), and no pip configuration file."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("PIP_")}
    env.update(HTTPS_PROXY=proxy_url, PIP_CERT=str(ca), SSL_CERT_FILE=str(ca), PIP_CONFIG_FILE=os.devnull,
               PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--timeout", "10", "-d", str(dest),
         "--index-url", index, *args, "example-package"],
        capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode != 0
    return out.stdout + out.stderr


# -- a host some rule could allow: the answer comes inside the tunnel ----------------------------

def test_denied_inside_the_tunnel_curl_requests_httpx(proxy, upstream_tls):
    url = f"https://127.0.0.1:{upstream_tls.port}/admin/x"
    code, body = curl(proxy, url)
    assert code == 403 and '"error":"blocked by policy' in body and '"rule"' in body
    r = _session(proxy.url, proxy.ca_bundle).get(url)
    assert r.status_code == 403 and r.json()["path"] == "/admin/x"
    assert r.reason.startswith("Blocked by OpenShell policy: ")
    assert r.headers["X-OpenShell-Rule"] == r.json()["rule"]
    ctx = ssl.create_default_context(cafile=str(proxy.ca_bundle))
    with httpx.Client(proxy=proxy.url, verify=ctx, trust_env=False) as c:
        assert c.get(url).json()["error"].startswith("blocked by policy")
    assert upstream_tls.requests == []


def test_denied_inside_the_tunnel_pip(proxy, upstream_tls, tmp_path):
    index = f"https://127.0.0.1:{upstream_tls.port}/private/simple/"
    text = _pip(proxy.url, proxy.ca_bundle, index, tmp_path, "-vv", "--retries", "0")  # HTTP errors: -vv
    assert "403 Client Error: Blocked by OpenShell policy: " in text, text
    assert upstream_tls.requests == []


# -- a host no rule could allow: the CONNECT refusal carries the reason -------------------------

def test_refused_connect_curl_verbose(proxy):
    out = subprocess.run(["curl", "-sv", "--max-time", "20", "--noproxy", "", "-x", proxy.url,
                          f"https://{NEVER}/x"], capture_output=True, text=True, timeout=30,
                         env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})
    assert f"< HTTP/1.1 403 Blocked by OpenShell policy: {NEVER_REASON}" in out.stderr
    assert f"< X-OpenShell-Denied: {NEVER_REASON}" in out.stderr
    assert "< X-OpenShell-Rule: network.egress[1] (deny, line " in out.stderr


def test_refused_connect_requests_httpx(proxy):
    with pytest.raises(requests.exceptions.ProxyError) as info:
        _session(proxy.url, proxy.ca_bundle).get(f"https://{NEVER}/x")
    assert NEVER_REASON in str(info.value)
    with httpx.Client(proxy=proxy.url, trust_env=False) as c, pytest.raises(httpx.ProxyError) as hinfo:
        c.get(f"https://{NEVER}/x")
    assert NEVER_REASON in str(hinfo.value)


def test_refused_connect_pip(proxy, tmp_path):
    text = _pip(proxy.url, proxy.ca_bundle, f"https://{NEVER}/simple/", tmp_path, "--retries", "1")
    assert "WARNING: Retrying" in text and NEVER_REASON in text, text  # pip's default output


def _bare_403(conn: RawConn) -> None:
    if conn.read_head():
        conn.send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")


def test_control_a_bare_403_shows_no_reason():
    with RawServer(_bare_403) as bare:
        with pytest.raises(requests.exceptions.ProxyError) as info:
            _session(f"http://127.0.0.1:{bare.port}", None).get(f"https://{NEVER}/x")
        assert "403" in str(info.value) and NEVER_REASON not in str(info.value)
