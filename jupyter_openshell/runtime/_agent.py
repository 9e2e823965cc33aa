"""The in-sandbox agent: PID 2 of every sandbox (bubblewrap's reaper is PID 1).

Started by bubblewrap as `python -I -S _agent.py CONFIG_JSON` with stdlib only, it:
  * sets the resource rlimits, then applies Landlock to itself (so every command inherits both);
  * listens on 127.0.0.1:3128 in the sandbox's network namespace and relays each connection to the
    policy proxy's per-sandbox gateway socket (/run/openshell/proxy.sock). When the proxy is down it
    answers 502 with an explanation and sends nothing anywhere;
  * serves exec requests (see `_wire`) on the listening socket the host passed in, running each
    command in a new session with the caller's own stdio fds.
When this process exits, the sandbox ends (the PID namespace is torn down). It must never reach
anything outside the sandbox except through the gateway socket, and never log command arguments
or environment (they may hold secrets).
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _landlock  # noqa: E402  (stdlib-only siblings, loaded without the package)
import _wire  # noqa: E402

_PROXY_DOWN = (
    "openshell: the policy proxy is not reachable from sandbox {name} ({why}).\n"
    "Nothing was sent: this sandbox has no other way out. Start the proxy on the host\n"
    "(`openshell proxy`, or the Jupyter server extension) and retry; the sandbox reconnects by itself.\n"
)


def log(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} agent: {message}\n")
    sys.stderr.flush()


class Agent:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.name = config["name"]
        self.proxy_sock = config["proxy_sock"]
        self.env = config["env"]
        self.workdir = config["workdir"]

    # --- set-up -------------------------------------------------------------------------------
    def setup(self) -> tuple[socket.socket, socket.socket]:
        for key, value in self.config.get("rlimits", {}).items():
            limit = getattr(resource, f"RLIMIT_{key}")
            resource.setrlimit(limit, (value, value))
        os.makedirs(self.env.get("HOME", "/tmp/home"), mode=0o700, exist_ok=True)
        control = socket.socket(fileno=self.config["control_fd"])
        host, port = self.config["listen"]
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(256)
        rules = self.config.get("landlock")
        if rules is not None:
            abi = _landlock.restrict(rules["ro"], rules["rw"], rules.get("list", []))
            log(f"landlock ABI {abi} applied" if abi else "landlock unavailable: mount namespace only")
        return control, listener

    # --- exec ---------------------------------------------------------------------------------
    def serve_exec(self, conn: socket.socket) -> None:
        try:
            request, fds = _wire.recv_request(conn)
        except (OSError, ValueError) as exc:
            log(f"bad exec request: {exc}")
            conn.close()
            return
        try:
            proc = self._spawn(conn, request, fds)
        finally:
            for fd in fds:
                os.close(fd)
        if proc is not None:
            self._supervise(conn, proc)
        conn.close()

    def _spawn(self, conn: socket.socket, request: dict, fds: list[int]) -> subprocess.Popen | None:
        argv = request.get("argv") or []
        env = dict(self.env)
        env.update(request.get("env") or {})
        stdio = (fds + [None, None, None])[:3]
        try:
            proc = subprocess.Popen(
                argv, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], env=env,
                cwd=request.get("cwd") or self.workdir, start_new_session=True, close_fds=True,
            )
        except (OSError, ValueError) as exc:
            message = f"openshell: cannot run {argv[0] if argv else '(empty command)'}: {exc}"
            if stdio[2] is not None:
                try:
                    os.write(stdio[2], (message + "\n").encode())
                except OSError:
                    pass
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            _safe_send(conn, {"error": message, "exit": code})
            return None
        log(f"exec pid {proc.pid}: {os.path.basename(argv[0])}")
        _safe_send(conn, {"pid": proc.pid})
        return proc

    def _supervise(self, conn: socket.socket, proc: subprocess.Popen) -> None:
        reader = _wire.LineReader(conn)
        pidfd = os.pidfd_open(proc.pid)
        sel = selectors.DefaultSelector()
        sel.register(pidfd, selectors.EVENT_READ, "exit")
        sel.register(conn, selectors.EVENT_READ, "conn")
        try:
            while proc.poll() is None:
                for key, _ in sel.select():
                    if key.data != "conn":
                        continue
                    try:
                        message = reader.read()
                    except (OSError, ValueError):
                        message = None
                    if message is None:  # the caller went away: end what it started
                        _killpg(proc.pid, signal.SIGKILL)
                        sel.unregister(conn)
                    elif "signal" in message:
                        _killpg(proc.pid, int(message["signal"]))
            log(f"exit pid {proc.pid}: {proc.returncode}")
            _safe_send(conn, {"exit": proc.returncode})
        finally:
            sel.close()
            os.close(pidfd)

    # --- proxy relay --------------------------------------------------------------------------
    def relay(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.proxy_sock)
        except OSError as exc:
            upstream.close()
            self._refuse(client, exc.strerror or str(exc))
            return
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def _refuse(self, client: socket.socket, why: str) -> None:
        log(f"proxy unreachable ({why}): refused a connection with 502")
        client.settimeout(2)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = client.recv(65536)
                if not chunk:
                    break
                head += chunk
            body = _PROXY_DOWN.format(name=self.name, why=why).encode()
            client.sendall(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"X-OpenShell-Error: proxy-unreachable\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
            )
            client.shutdown(socket.SHUT_WR)
            while client.recv(65536):
                pass
        except OSError:
            pass
        finally:
            client.close()

    # --- main loop ----------------------------------------------------------------------------
    def run(self) -> None:
        control, listener = self.setup()
        ready = self.config.get("ready_fd")
        if ready is not None:
            os.write(ready, b"ready\n")
            os.close(ready)
        log(f"sandbox {self.name} ready")
        sel = selectors.DefaultSelector()
        sel.register(control, selectors.EVENT_READ, self.serve_exec)
        sel.register(listener, selectors.EVENT_READ, self.relay)
        while True:
            for key, _ in sel.select():
                try:
                    conn, _addr = key.fileobj.accept()
                except OSError:
                    continue
                threading.Thread(target=key.data, args=(conn,), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(262144)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _safe_send(conn: socket.socket, message: dict) -> None:
    try:
        _wire.send_line(conn, message)
    except OSError:
        pass


def main() -> None:
    threading.stack_size(512 << 10)  # many relay threads must fit a small RLIMIT_AS
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    Agent(json.loads(sys.argv[1])).run()


if __name__ == "__main__":
    main()
