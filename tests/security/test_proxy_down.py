"""The proxy killed mid-session (root and unprivileged): nothing gets out, the sandbox says why at
once (502 with an explanation, and its log), and a restarted proxy serves the same sandbox again."""

from __future__ import annotations

import os
import signal
import time

from jupyter_openshell.testing import UpstreamServer

ALLOW_LOOPBACK = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{port}]
      paths:
        - path: "/ok/**"
          methods: ["GET"]
      action: allow
    - action: deny
"""


def _curl(mode, name: str, url: str):
    proc = mode.sh(name, f"curl -sS --noproxy '' -m 10 -w '\\n%{{http_code}}' {url}")
    body, _, code = proc.stdout.rpartition("\n")
    return code, body


def test_proxy_killed_mid_session_fails_closed_then_recovers(mode):
    with UpstreamServer() as upstream:
        name = mode.create(ALLOW_LOOPBACK.format(port=upstream.port))
        code, _ = _curl(mode, name, upstream.url("/ok/1"))
        assert code == "200"
        assert len(upstream.requests) == 1

        os.kill(mode.proxy()["pid"], signal.SIGKILL)
        time.sleep(0.2)
        start = time.monotonic()
        code, body = _curl(mode, name, upstream.url("/ok/2"))
        assert code == "502"
        assert "policy proxy is not reachable" in body
        assert time.monotonic() - start < 5
        assert len(upstream.requests) == 1  # nothing got out
        assert "proxy unreachable" in mode.cli("logs", name).stdout

        mode.host_python("from jupyter_openshell.proxy import ProxyClient; ProxyClient().ensure_running()")
        code, _ = _curl(mode, name, upstream.url("/ok/3"))
        assert code == "200"
        assert [r.path for r in upstream.requests] == ["/ok/1", "/ok/3"]
        mode.rm(name)
