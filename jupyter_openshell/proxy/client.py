"""`ProxyClient`: start, query and steer the policy proxy through its control API.

The control API is HTTP/1.1 + JSON over `<state>/run/proxy-control.sock`; `ensure_running()` starts
`openshell proxy` detached when nothing answers there (pid and port land in `<state>/run/proxy.json`,
its stderr in `<state>/run/proxy.log`). A proxy started for a sandbox (`ensure_running(auto=True)`) is
marked in `<state>/run/proxy-auto.json` and stopped by `release_if_unused()` once no sandbox is
registered any more; one started on its own (`openshell proxy`, `openshell proxy start`, the Jupyter
extension) or with OPENSHELL_KEEP_PROXY=1 is kept. Starting and stopping are reported on the
"jupyter_openshell.proxy" logger (the CLI prints them). It must never read secrets or policy files itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jupyter_openshell.hostproc import SYSTEM_PATH, popen, python_argv
from jupyter_openshell.names import HOST_CALLER
from jupyter_openshell.paths import Layout, ensure_private_dir, state_dir

DEFAULT_POLICY = "network:\n  egress:\n    - action: deny\n"
KEEP_ENV = "OPENSHELL_KEEP_PROXY"  # "1": a proxy started for a sandbox outlives its last sandbox
log = logging.getLogger("jupyter_openshell.proxy")


class ProxyError(RuntimeError):
    """The proxy is not running, failed to start, or refused a control request (message says why)."""


def _unix_request(path: str, timeout: float, method: str, target: str,
                  payload: bytes | None) -> tuple[int, bytes]:
    """One HTTP/1.1 exchange with the control API on UNIX socket `path`: (status, body). The control API
    answers every request with Content-Length and closes the connection, so reading to EOF is the body
    (http.client would cost the CLI ~30 ms of imports, ssl among them)."""
    head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    if payload is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(head.encode() + b"\r\n" + (payload or b""))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    header, sep, body = response.partition(b"\r\n\r\n")
    status_line = header.split(b"\r\n", 1)[0].split()
    if not sep or len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1.") \
            or not status_line[1].isdigit():
        raise ValueError(f"not an HTTP response: {response[:80]!r}")
    return int(status_line[1]), body


class ProxyClient:
    def __init__(self, state_dir_: Path | str | None = None, timeout: float = 10.0):
        self.state_dir = Path(state_dir_) if state_dir_ is not None else state_dir()
        self.timeout = timeout
        self.layout = Layout(self.state_dir)
        self.control_path = self.layout.proxy_control
        self.run_file = self.layout.proxy_run_file
        self.log_file = self.layout.proxy_log
        self.auto_file = self.layout.proxy_auto_file

    # -- transport ----------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        payload = json.dumps(body).encode() if body is not None else None
        try:
            status, raw = _unix_request(str(self.control_path), self.timeout, method, path, payload)
            data = json.loads(raw or b"null")
        except (OSError, ValueError) as exc:
            raise ProxyError(f"the policy proxy is not answering on {self.control_path}: {exc}; "
                             "start it with `openshell proxy --policy FILE` or ProxyClient.ensure_running()"
                             ) from None
        if status >= 400:
            raise ProxyError(f"proxy control {method} {path}: {data.get('error') if data else status}")
        return data

    # -- public API ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """pid, listen, control, workers, ca_bundle, policies {name: version, last_error...}, sandboxes."""
        return self._call("GET", "/status")

    def is_running(self) -> bool:
        try:
            self.status()
        except ProxyError:
            return False
        return True

    def register_sandbox(self, name: str, *, policy_file: Path | str, socket_path: Path | str | None = None,
                         created: float | None = None, token_sha256: str | None = None,
                         source: str | None = None) -> dict[str, Any]:
        """Register sandbox `name` (the instance `created`) under the policy in `policy_file` (watched: a
        new version applies to the next request). Channel "unix" (`socket_path`): the proxy listens on
        that UNIX socket (only that sandbox can reach it) and serves every connection accepted there as
        that sandbox. Channel "token" (`token_sha256` and `source`): a connection to the TCP listener
        from address `source` whose first request presents the credential with that SHA-256 (see
        `addons/identity.py`) is that sandbox's. Returns {name, created, socket, channel, source,
        policy_file, policy_version, policy_error}."""
        if socket_path is not None:
            channel: dict[str, Any] = {"kind": "unix", "socket": os.path.abspath(socket_path)}
        else:
            channel = {"kind": "token", "token_sha256": token_sha256, "source": source}
        body = {"created": created, "policy_file": str(Path(policy_file).resolve()), "channel": channel}
        return self._call("POST", f"/sandboxes/{quote(name, safe='')}", body)

    def unregister_sandbox(self, name: str, created: float | None = None) -> dict[str, Any]:
        """Close `name`'s gateway and forget it. With `created` (as registered), only that
        sandbox is unregistered: a late call for an earlier sandbox of the same name gets ProxyError
        (409) and leaves the newer registration alone."""
        query = f"?created={created!r}" if created is not None else ""
        return self._call("DELETE", f"/sandboxes/{quote(name, safe='')}{query}")

    def flows(self, sandbox: str | None = None, since: float = 0, limit: int = 200, *,
              after: int | None = None,
              created: float | str | None = "current") -> list[dict[str, Any]]:
        """Flow records, oldest first (see `flow_page`)."""
        return self.flow_page(sandbox, since, limit, after=after, created=created)["flows"]

    def flow_page(self, sandbox: str | None = None, since: float = 0, limit: int = 200, *,
                  after: int | None = None, created: float | str | None = "current") -> dict[str, Any]:
        """{"flows", "next_after"}: records oldest first. `after` (a record's `seq`, or the last answer's
        `next_after`): the first `limit` later records, so paging never repeats or skips one, across
        proxy restarts and rotated log files; else with `since` the first `limit` at or after that ts;
        else the newest `limit`. With `sandbox`, `created` picks the instance: "current" (the sandbox now
        called so; every record of the name if there is none), "any", None (records of no known
        instance) or a registered `created`."""
        params: dict[str, Any] = {"since": since, "limit": limit}
        if after is not None:
            params["after"] = int(after)
        if sandbox is not None:
            params["sandbox"] = sandbox
            params["created"] = "none" if created is None else created if isinstance(created, str) else \
                repr(float(created))
        return self._call("GET", "/flows?" + urlencode(params))

    def reload(self) -> dict[str, Any]:
        return self._call("POST", "/reload")

    def ensure_running(self, policy_file: Path | str | None = None, *, listen: str = "127.0.0.1:0",
                       workers: int = 1, extra_args: list[str] | None = None,
                       env: dict[str, str] | None = None, wait: float = 30.0,
                       auto: bool = False) -> dict[str, Any]:
        """Start `openshell proxy` in the background unless it answers already; wait until it serves.

        `policy_file` defaults to `<state>/policies/default.yaml` (created deny-all if missing). With
        `auto` (a sandbox needs it), a proxy this call starts is reported and stops with the last
        sandbox (`release_if_unused`), unless OPENSHELL_KEEP_PROXY=1."""
        try:
            return self.status()
        except ProxyError:
            pass
        ensure_private_dir(self.layout.run_dir)
        # one starter at a time: a second caller waits, then finds the first one's proxy
        with open(self.layout.proxy_lock, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return self.status()
            except ProxyError:
                status = self._start(policy_file, listen, workers, extra_args or [], env or {}, wait)
            if auto and os.environ.get(KEEP_ENV, "") not in ("1", "yes", "true"):
                self._write_auto(status["pid"])
                ends = ("it stops with the last sandbox (OPENSHELL_KEEP_PROXY=1 keeps it); "
                        "`openshell proxy stop` stops it now")
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.auto_file.unlink()
                ends = "`openshell proxy stop` stops it"
            log.info("started the policy proxy: pid %s, listening on %s, log %s; %s",
                     status["pid"], status["listen"], self.log_file, ends)
            return status

    def in_use(self) -> contextlib.AbstractContextManager[None]:
        """Hold while starting and registering a sandbox: `release_if_unused` then waits, so it never
        stops the proxy between another process's `ensure_running` and its `register_sandbox`."""
        return self._users_lock(fcntl.LOCK_SH)

    @contextlib.contextmanager
    def _users_lock(self, how: int) -> Iterator[None]:
        ensure_private_dir(self.layout.run_dir)
        path = self.layout.proxy_users_lock
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            os.close(fd)

    def auto_started(self) -> int | None:
        """The pid of the running proxy if it was started for a sandbox (it stops with the last one)."""
        try:
            auto = json.loads(self.auto_file.read_text())["pid"]
            running = json.loads(self.run_file.read_text())["pid"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return int(auto) if auto == running and _alive(int(auto)) else None

    def keep(self) -> int | None:
        """Keep a proxy that was started for a sandbox (`openshell proxy start` on a running one); its pid."""
        pid = self.auto_started()
        with contextlib.suppress(FileNotFoundError):
            self.auto_file.unlink()
        return pid

    def release_if_unused(self) -> str | None:
        """Stop the proxy if it was started for a sandbox and no sandbox is registered any more; returns
        what was done (also logged), or None when the proxy stays."""
        if self.auto_started() is None:
            return None
        with self._users_lock(fcntl.LOCK_EX):
            pid = self.auto_started()
            try:
                if pid is None or self.status().get("sandboxes"):
                    return None
            except ProxyError:
                return None
            self.stop()
        message = f"stopped the policy proxy (pid {pid}) that was started for sandboxes: none is left"
        log.info(message)
        return message

    def _start(self, policy_file: Path | str | None, listen: str, workers: int, extra_args: list[str],
               env: dict[str, str], wait: float) -> dict[str, Any]:
        if policy_file is None:
            ensure_private_dir(self.layout.policies_dir)
            policy_file = self.layout.policy(HOST_CALLER)
            if not policy_file.exists():
                fd = os.open(policy_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(DEFAULT_POLICY)
        argv = python_argv("jupyter_openshell", "proxy", "--policy", str(Path(policy_file).resolve()),
                           "--listen", listen, "--workers", str(workers),
                           "--state-dir", str(self.state_dir.resolve()), *extra_args)
        with open(self.log_file, "ab") as log:
            os.chmod(self.log_file, 0o600)
            proc = popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                         env={"PATH": SYSTEM_PATH, **env})
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ProxyError(f"the policy proxy exited with status {proc.returncode} while starting; "
                                 f"its log {self.log_file} ends with:\n{self._log_tail()}")
            try:
                return self.status()
            except ProxyError:
                time.sleep(0.05)
        proc.terminate()
        raise ProxyError(f"the policy proxy did not answer within {wait:.0f}s; see {self.log_file}:\n"
                         f"{self._log_tail()}")

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the running proxy; True if one was running."""
        with contextlib.suppress(FileNotFoundError):
            self.auto_file.unlink()
        try:
            pid = int(json.loads(self.run_file.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            pid = None
        try:
            self._call("POST", "/shutdown")
        except ProxyError:
            if pid is None:
                return False
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                return False
        if pid is not None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        return True

    def _write_auto(self, pid: int) -> None:
        tmp = self.auto_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"pid": pid, "started": time.time()}, fh)
        os.replace(tmp, self.auto_file)

    def _log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_file.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
