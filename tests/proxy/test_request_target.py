"""Absolute-form request-targets inside a CONNECT tunnel (issue 7, item 4).

The policy judges the tunnel's host; an upstream doing virtual hosting routes by the request-target's
authority (RFC 9112 3.2.2), so `GET http://other.host/ HTTP/1.1` inside a tunnel to an allowed host
would be served by another site. The proxy refuses an authority that disagrees with the tunnel (400)
and forwards an agreeing one in origin-form, which the flow log records."""

from __future__ import annotations

import json

import pytest

from .conftest import NAMES, flow_records
from .rawserver import RawConn, RawServer, ok
from .wire import Client, request

POLICY = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{ports}]
      paths:
        - path: "/v1/**"
          methods: ["GET"]
      action: allow
    - action: deny
"""


def _vhost(conn: RawConn) -> None:
    """Answers {"site", "target"}: the site is the request-target's authority if absolute, else Host."""
    while head := conn.read_head():
        lines = head.decode("latin-1").split("\r\n")
        target = lines[0].split(" ")[1]
        fields = (x.partition(":") for x in lines[1:])
        host = next((v.strip() for k, _, v in fields if k.lower() == "host"), "")
        site = target.split("/")[2] if "://" in target else host
        conn.send(ok(json.dumps({"site": site, "target": target}).encode()))


@pytest.fixture(scope="module")
def vhosts(test_ca):
    with RawServer(_vhost) as plain, RawServer(_vhost, tls=test_ca.server_context(NAMES)) as tls:
        yield plain, tls


@pytest.fixture
def tunnel_proxy(make_proxy, vhosts):
    plain, tls = vhosts
    return make_proxy(POLICY.format(ports=f"{plain.port}, {tls.port}"))


def _open(proxy, vhosts, tls: bool) -> tuple[Client, str]:
    server = vhosts[1] if tls else vhosts[0]
    authority = f"127.0.0.1:{server.port}"
    return Client(proxy.port, tunnel=authority, ca=proxy.ca_bundle if tls else None), authority


@pytest.mark.parametrize("tls", [False, True], ids=["plain-tunnel", "tls-tunnel"])
@pytest.mark.parametrize("target", [
    "{scheme}://other.example.com:{port}/v1/x",
    "{scheme}://other.example.com/v1/x",
    "{scheme}://127.0.0.2:{port}/v1/x",
    "{scheme}://127.0.0.1:1/v1/x",
    "{scheme}://127.0.0.1.evil.example/v1/x",
])
def test_disagreeing_authority_is_refused(tunnel_proxy, vhosts, tls, target):
    before = sum(len(s.received()) for s in vhosts)
    client, authority = _open(tunnel_proxy, vhosts, tls)
    port = authority.rsplit(":", 1)[1]
    client.send(request("GET", target.format(scheme="https" if tls else "http", port=port), authority))
    answer = client.read()
    client.close()
    assert answer.status == 400, answer
    assert "authority" in answer.json()["error"]
    assert sum(len(s.received()) for s in vhosts) == before  # nothing reached any site
    assert flow_records(tunnel_proxy)[-1]["status"] == 400


@pytest.mark.parametrize("tls", [False, True], ids=["plain-tunnel", "tls-tunnel"])
@pytest.mark.parametrize("spelling", ["127.0.0.1:{port}", "127.0.0.1.:{port}", "0x7f.1:{port}"])
def test_agreeing_authority_is_forwarded_in_origin_form(tunnel_proxy, vhosts, tls, spelling):
    client, authority = _open(tunnel_proxy, vhosts, tls)
    port = authority.rsplit(":", 1)[1]
    scheme = "https" if tls else "http"
    client.send(request("GET", f"{scheme}://{spelling.format(port=port)}/v1/./x?q=1", authority))
    answer = client.read()
    client.close()
    assert answer.status == 200, answer
    assert answer.json() == {"site": authority, "target": "/v1/x?q=1"}  # what was judged went out
    record = flow_records(tunnel_proxy)[-1]
    assert (record["host"], record["port"], record["path"], record["decision"]) == (
        "127.0.0.1", int(port), "/v1/x", "allow")


def test_two_host_headers_are_refused(tunnel_proxy, vhosts):
    client, authority = _open(tunnel_proxy, vhosts, False)
    client.send(request("GET", "/v1/x", authority, "Host: other.example.com\r\n"))
    answer = client.read()
    client.close()
    assert answer.status == 400 and "Host" in answer.json()["error"]


def test_control_stock_mitmproxy_forwards_the_other_authority(stock_proxy, vhosts):
    """Without the check the upstream serves the site the request-target names, not the tunnel's."""
    client, authority = _open(stock_proxy, vhosts, False)
    port = authority.rsplit(":", 1)[1]
    client.send(request("GET", f"http://other.example.com:{port}/v1/x", authority))
    answer = client.read()
    client.close()
    assert answer.json()["site"] == f"other.example.com:{port}"
