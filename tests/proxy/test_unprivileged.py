"""The proxy works as an unprivileged user (uid 65534): CA, control socket, flow log, secrets."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from jupyter_openshell.testing import start_proxy

from .conftest import curl

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="needs root and setpriv to switch to uid 65534")
UNPRIV = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


def test_proxy_as_nobody(upstream):
    upstream.clear()
    base = Path(tempfile.mkdtemp(prefix="openshell-unpriv-"))
    try:
        os.chmod(base, 0o755)
        state = base / "state"
        state.mkdir(mode=0o700)
        policy = base / "policy.yaml"
        policy.write_text(f'network:\n  egress:\n    - host: "127.0.0.1"\n      ports: [{upstream.port}]\n'
                          '      paths:\n        - path: "/ok"\n      action: allow\n')
        for p in (state, policy):
            os.chown(p, 65534, 65534)
        proxy = start_proxy(state, policy, wrap=UNPRIV)
        try:
            assert curl(proxy, f"http://127.0.0.1:{upstream.port}/ok")[0] == 200
            code, body = curl(proxy, f"http://127.0.0.1:{upstream.port}/no")
            assert code == 403 and json.loads(body)["rule"] == "no rule matched (default deny)"
            key = state / "ca" / "mitmproxy-ca.pem"
            assert key.stat().st_uid == 65534 and stat.S_IMODE(key.stat().st_mode) == 0o600
            log = state / "flows" / "flows.jsonl"
            assert log.stat().st_uid == 65534 and len(log.read_text().splitlines()) == 2
        finally:
            proxy.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_protocol_protections_as_nobody():
    """The upgrade, size-limit and request-target protections hold with the proxy running as uid 65534."""
    from .rawserver import RawServer
    from .test_limits import MiB, _chunked, _send_all, _sink
    from .test_upgrades import SECOND, UPGRADES, _switch_always
    from .wire import Client, request

    base = Path(tempfile.mkdtemp(prefix="openshell-unpriv-"))
    try:
        os.chmod(base, 0o755)
        state = base / "state"
        state.mkdir(mode=0o700)
        policy = base / "policy.yaml"
        with RawServer(_switch_always) as switching, RawServer(_sink) as sink:
            policy.write_text(f'network:\n  egress:\n    - host: "127.0.0.1"\n'
                              f'      ports: [{switching.port}, {sink.port}]\n      action: allow\n')
            for p in (state, policy):
                os.chown(p, 65534, 65534)
            proxy = start_proxy(state, policy, wrap=UNPRIV, extra=["--max-body", "1M"])
            try:
                a = f"127.0.0.1:{switching.port}"
                client = Client(proxy.port)
                client.send(request("GET", f"http://{a}/x", a, UPGRADES["h2c"]))
                assert client.read().status == 502
                client.send(SECOND)
                assert client.closed()
                client.close()
                b = f"127.0.0.1:{sink.port}"
                client = Client(proxy.port)
                _send_all(client, request("GET", f"http://{b}/{'a' * MiB}", b))
                assert client.read().status == 414
                client.close()
                client = Client(proxy.port)
                client.send(request("POST", f"http://{b}/up", b, "Transfer-Encoding: chunked\r\n"))
                _send_all(client, _chunked(3 * MiB))
                assert client.read().status == 413
                client.close()
                client = Client(proxy.port, tunnel=b)
                client.send(request("GET", "http://other.example.com/x", b))
                assert client.read().status == 400
                client.close()
            finally:
                proxy.stop()
            switching.conns[-1].closed.wait(6)
            assert b"DELETE" not in switching.received()
            assert not sink.received().endswith(b"0\r\n\r\n")
    finally:
        shutil.rmtree(base, ignore_errors=True)
