"""Allowed but failed is not denied (issue 8, item 10): a request the policy allowed that fails upstream
(the name does not resolve, the connection is refused or times out, TLS fails, the upstream hangs up)
is answered 502 (504 for a timeout) with JSON `"error": "upstream-failure"`, the reason and the rule
that allowed it; its flow record says decision "allow", that status and an `error`. The control shows
what a client got from stock mitmproxy: an HTML page, nothing a notice could read."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest

from jupyter_openshell.testing import start_proxy

from .conftest import NAMES, curl, flow_records
from .rawserver import RawConn, RawServer
from .wire import Client, request

POLICY = """\
network:
  egress:
    - host: "nowhere.test"
      ports: [80]
      action: allow
    - host: "127.0.0.1"
      ports: [{ports}]
      paths:
        - path: "/ok/**"
      action: allow
    - action: deny
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _black_hole():
    """A port whose accept queue is full: the kernel drops further SYNs, so a connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)
    try:
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


def _hang_up(conn: RawConn) -> None:
    conn.read_head()  # and close without an answer


def _failure(answer, status: int, reason_part: str) -> dict:
    assert answer.status == status, answer
    assert answer.headers.get("x-openshell-error") == "upstream-failure"
    body = answer.json()
    assert body["error"] == "upstream-failure" and body["status"] == status
    assert reason_part in body["reason"], body
    assert body["rule"].startswith("network.egress[") and "allow" in body["rule"]
    assert "Upstream failure" in answer.reason
    return body


def _record_says_allowed_failure(proxy, status: int) -> None:
    record = flow_records(proxy)[-1]
    assert (record["decision"], record["status"]) == ("allow", status), record
    assert record["error"] and record["rule"].startswith("network.egress[")


@pytest.fixture
def failing(make_proxy):
    with RawServer(_hang_up) as hang, _black_hole() as hole:
        closed = _closed_port()
        proxy = make_proxy(POLICY.format(ports=f"{closed}, {hang.port}, {hole}"),
                           resolve={"nowhere.test": ""}, extra=["--connect-timeout", "1"])
        yield proxy, {"closed": closed, "hang": hang.port, "hole": hole}


@pytest.mark.parametrize(("case", "status", "reason"), [
    ("dns", 502, "cannot resolve nowhere.test"),
    ("closed", 502, "onnect"),
    ("hang", 502, "closed"),
    ("hole", 504, "timed out after 1 s"),
])
def test_allowed_request_that_fails_upstream(failing, case, status, reason):
    proxy, ports = failing
    authority = "nowhere.test" if case == "dns" else f"127.0.0.1:{ports[case]}"
    client = Client(proxy.port)
    client.send(request("GET", f"http://{authority}/ok/x", authority))
    body = _failure(client.read(), status, reason)
    client.send(request("GET", f"http://{authority}/ok/y", authority))  # the connection still serves
    assert client.read().status == status
    client.close()
    assert (body["method"], body["host"], body["path"]) == ("GET", authority.split(":")[0], "/ok/x")
    _record_says_allowed_failure(proxy, status)


def test_a_denial_is_still_a_denial(failing):
    proxy, ports = failing
    code, body = curl(proxy, f"http://127.0.0.1:{ports['closed']}/admin")
    assert code == 403 and body.startswith('{"error":"blocked by policy')
    assert flow_records(proxy)[-1]["decision"] == "deny"


def test_upstream_tls_failure_inside_the_tunnel(tmp_path, test_ca):
    """The proxy does not trust the test CA here (no --upstream-ca): the handshake fails, and the client
    reads the 502 inside its own intercepted tunnel."""
    from jupyter_openshell.testing import UpstreamServer

    with UpstreamServer(tls=test_ca.server_context(NAMES)) as srv:
        policy = tmp_path / "policy.yaml"
        policy.write_text(POLICY.format(ports=srv.port))
        proxy = start_proxy(tmp_path / "state", policy, extra=["--upstream-trust", "certifi"])
        try:
            code, text = curl(proxy, f"https://127.0.0.1:{srv.port}/ok/x")
            assert code == 502
            assert '"error":"upstream-failure"' in text and "certificate verify failed" in text.lower()
            _record_says_allowed_failure(proxy, 502)
            assert srv.requests == []
        finally:
            proxy.stop()


def test_control_stock_mitmproxy_answers_html(stock_proxy):
    authority = f"127.0.0.1:{_closed_port()}"
    client = Client(stock_proxy.port)
    client.send(request("GET", f"http://{authority}/ok/x", authority))
    answer = client.read()
    client.close()
    assert answer.status == 502 and "x-openshell-error" not in answer.headers
    with pytest.raises(ValueError):
        answer.json()
