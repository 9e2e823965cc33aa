"""The policy broker of one kernel sandbox: a UNIX socket in its kernel channel (seen inside the sandbox),
for the in-kernel magics; it answers with `services.policies.PolicyService` of that sandbox alone.

The state directory is never visible in a sandbox, so `%policy` and the widgets inside an OpenShell kernel
ask this broker (host side) instead. It only ever acts on its own sandbox's policy and flows; reading is
always allowed, changing the policy only when the kernelspec sets `policy_edits` (off by default, since code
in the sandbox could otherwise widen its own egress). One JSON request line, one JSON answer line.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any

READ_OPS = frozenset({"show", "explain", "history", "flows", "flow_page", "rule_for"})
WRITE_OPS = frozenset({"put", "allow", "allow_preset", "deny", "mode", "rollback"})
MAX_REQUEST = 1 << 20


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        broker: Broker = self.server.broker  # type: ignore[attr-defined]
        line = self.rfile.readline(MAX_REQUEST)
        if not line:  # a liveness probe (session.cleanup_stale) connects and hangs up without asking
            return
        try:
            request = json.loads(line)
            answer = {"ok": True, "result": broker.dispatch(request.get("op"), request.get("args") or {})}
        except Exception as exc:
            answer = {"ok": False, "error": str(exc), "issues": _issues(exc)}
        self.wfile.write(json.dumps(answer, default=str).encode() + b"\n")


def _issues(exc: Exception) -> list[dict]:
    from jupyter_openshell.services.errors import issue_dicts

    return issue_dicts(exc)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Broker:
    def __init__(self, sandbox: str, path: Path, policy_edits: bool = False):
        self.sandbox, self.path, self.policy_edits = sandbox, path, policy_edits
        self._server: _Server | None = None

    def start(self) -> None:
        self._server = _Server(str(self.path), _Handler)
        self._server.broker = self  # type: ignore[attr-defined]
        self.path.chmod(0o666)  # the kernel may run as another uid inside; the directory is private
        threading.Thread(
            target=self._server.serve_forever, name=f"broker-{self.sandbox}", daemon=True
        ).start()

    def dispatch(self, op: Any, args: dict) -> Any:
        from jupyter_openshell.services.policies import PolicyService

        if op == "capabilities":  # what the kernel's notices and PolicyPanel may offer
            return {"sandbox": self.sandbox, "policy_edits": self.policy_edits, "inside_kernel": True}
        if op in WRITE_OPS and not self.policy_edits:
            raise PermissionError(
                f"policy changes from inside sandbox {self.sandbox!r} are disabled: on the host run "
                f"`openshell sandbox allow {self.sandbox} METHOD URL` or `openshell sandbox policy "
                f"{self.sandbox} --set FILE`, or the same %policy command (with {self.sandbox}) from a host "
                "kernel, or set policy_edits in the kernelspec"
            )
        if op not in READ_OPS | WRITE_OPS:
            raise ValueError(f"unknown broker operation {op!r}")
        result = getattr(PolicyService(self.sandbox), op)(**args)
        if op == "explain" and not self.policy_edits and "allow_with" in result:  # what works from here
            from jupyter_openshell.flowtext import host_allow_command

            method, url = result["request"].split(" ", 1)
            result["allow_with"] = f"(on the host) {host_allow_command(self.sandbox, method, url)}"
        return result

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def call(path: str, op: str, **args: Any) -> Any:
    """Client side (inside the sandbox): one request to the broker; raises `BrokerError` on refusal."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data)
    if not answer.get("ok"):
        raise BrokerError(answer.get("error", "broker error"), answer.get("issues") or [])
    return answer["result"]


class BrokerError(RuntimeError):
    def __init__(self, message: str, issues: list[dict]):
        super().__init__(message)
        self.issue_dicts = issues
