"""The in-sandbox agent: PID 2 of every sandbox (bubblewrap's reaper is PID 1).

Started by bubblewrap as `python -I -S -B -c BOOT FD` (`_local.AGENT_BOOT`): FD holds, marshalled, the
config and the compiled code of this module, `_landlock` and `_wire` (so nothing is compiled inside), and
it imports only builtin stdlib modules (`_socket`, `_signal`: not `socket`/`signal`, whose `enum` import
costs milliseconds; start-up time is sandbox creation time). It:
  * sets the resource rlimits, then applies Landlock to itself (so every command inherits both);
  * listens on 127.0.0.1:3128 in the sandbox's network namespace and relays each connection to the
    policy proxy's per-sandbox gateway socket (/run/openshell/proxy.sock). When the proxy is down it
    answers 502 with an explanation and sends nothing anywhere;
  * serves exec requests (see `_wire`) on the listening socket the host passed in (or, in a container,
    one it makes at `control_path`), from host processes only (a peer with a pid in the sandbox's
    namespace is refused), running each command with posix_spawn in a new session with the caller's
    own stdio fds.
When this process exits, the sandbox ends (the PID namespace is torn down). It must never reach
anything outside the sandbox except through the gateway socket, and never log command arguments
or environment (they may hold secrets).
"""

from __future__ import annotations

import _signal as signal
import _socket as socket
import _thread
import os
import resource
import select
import sys
import time

import _landlock  # (stdlib-only siblings, preloaded by the boot code)
import _wire

_PROXY_DOWN = (
    "openshell: the policy proxy is not reachable from sandbox {name} ({why}).\n"
    "Nothing was sent: this sandbox has no other way out. Start the proxy on the host\n"
    "(`openshell proxy`, or the Jupyter server extension) and retry; the sandbox reconnects by itself.\n"
)
_CD_THEN_EXEC = 'cd -- "$0" && exec "$@"'  # posix_spawn cannot chdir: a shell does it for other cwds
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def log(message: str) -> None:
    os.write(2, f"{time.strftime('%Y-%m-%dT%H:%M:%S')} agent: {message}\n".encode())


def _killpg(pid: int, sig: int) -> None:
    for kill, target in ((os.killpg, pid), (os.kill, pid)):
        try:
            kill(target, sig)
            return
        except (ProcessLookupError, PermissionError):
            continue


def _quietly(func, *args) -> None:  # (not contextlib.suppress: start-up time)
    """Call func(*args), ignoring OSError (a peer or fd that went away)."""
    try:
        func(*args)
    except OSError:
        return


def _which(command: str, env: dict, cwd: str) -> str | None:
    if "/" in command:
        path = os.path.join(cwd, command)
        return path if os.access(path, os.X_OK) else None
    for directory in os.get_exec_path(env):
        path = os.path.join(directory, command)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


def _pump(src: socket.socket, dst: socket.socket, done: list) -> None:
    try:
        while data := src.recv(262144):
            dst.sendall(data)
    except OSError:
        pass
    _quietly(dst.shutdown, socket.SHUT_WR)
    done.append(1)
    if len(done) == 2:
        src.close()
        dst.close()


class Agent:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.name = config["name"]
        self.proxy_sock = config["proxy_sock"]
        self.env = config["env"]
        self.workdir = config["workdir"]

    # --- set-up -------------------------------------------------------------------------------
    def setup(self) -> tuple[socket.socket, socket.socket]:
        keep = {0, 1, 2, *(self.config[k] for k in ("control_fd", "ready_fd", "go_fd") if k in self.config)}
        for entry in os.listdir("/proc/self/fd"):  # nothing bwrap left open reaches a command
            if int(entry) not in keep:
                _quietly(os.close, int(entry))
        for fd in keep - {0, 1, 2}:
            os.set_inheritable(fd, False)
        for key, value in self.config.get("rlimits", {}).items():
            limit = getattr(resource, f"RLIMIT_{key}")
            resource.setrlimit(limit, (value, value))
        os.makedirs(self.env.get("HOME", "/tmp/home"), mode=0o700, exist_ok=True)
        control = self._control()
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

    def _control(self) -> socket.socket:
        """The exec listener: the one the host passed (local), or one made at `control_path` in a
        directory the host bound in (docker), renamed into place once it listens."""
        if "control_fd" in self.config:
            return socket.socket(fileno=self.config["control_fd"])
        path = self.config["control_path"]
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _quietly(os.unlink, path + ".new")
        control.bind(path + ".new")
        control.listen(64)
        os.rename(path + ".new", path)
        return control

    # --- exec ---------------------------------------------------------------------------------
    def serve_exec(self, conn: socket.socket) -> None:
        # Only the host may ask: a process of this sandbox has a pid in its namespace, the host's is 0.
        cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        if int.from_bytes(cred[:4], sys.byteorder) != 0:
            log("refused an exec connection from inside the sandbox")
            conn.close()
            return
        try:
            request, fds = _wire.recv_request(conn)
        except (OSError, ValueError, EOFError, TypeError) as exc:
            log(f"bad exec request: {exc}")
            conn.close()
            return
        try:
            pid = self._spawn(conn, request, fds)
        finally:
            for fd in fds:
                os.close(fd)
        if pid is not None:
            self._supervise(conn, pid)
        conn.close()

    def _spawn(self, conn: socket.socket, request: dict, fds: list[int]) -> int | None:
        argv = [str(a) for a in request.get("argv") or []]
        env = dict(self.env)
        env.update(request.get("env") or {})
        cwd = request.get("cwd") or self.workdir
        path = _which(argv[0], env, cwd) if argv else None
        if path is None:
            message = f"openshell: {argv[0] if argv else '(empty command)'}: command not found"
            if len(fds) > 2:
                _quietly(os.write, fds[2], (message + "\n").encode())
            self._reply(conn, error=message, exit=127)
            return None
        if os.path.realpath(cwd) != os.getcwd():
            argv, path = ["/bin/sh", "-c", _CD_THEN_EXEC, cwd, path, *argv[1:]], "/bin/sh"
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds[:3])]
        try:
            pid = os.posix_spawn(
                path, argv, env, file_actions=actions, setsid=True, setsigdef=_DEFAULT_SIGNALS
            )
        except OSError as exc:
            self._reply(conn, error=f"openshell: cannot run {argv[0]}: {exc.strerror}", exit=126)
            return None
        log(f"exec pid {pid}: {os.path.basename(argv[0])}")
        self._reply(conn, pid=pid)
        return pid

    def _supervise(self, conn: socket.socket, pid: int) -> None:
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(conn, select.POLLIN)
        try:
            while True:
                ready = {fd for fd, _ in poller.poll()}
                if pidfd in ready:
                    break
                message = _wire.recv_frame(conn)
                if message is None:  # the caller went away: end what it started
                    _killpg(pid, signal.SIGKILL)
                    poller.unregister(conn)
                elif "signal" in message:
                    _killpg(pid, int(message["signal"]))
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            log(f"exit pid {pid}: {code}")
            self._reply(conn, exit=code)
        finally:
            os.close(pidfd)

    @staticmethod
    def _reply(conn: socket.socket, **fields: int | str) -> None:
        _quietly(lambda: _wire.reply(conn, **fields))

    # --- proxy relay --------------------------------------------------------------------------
    def relay(self, client: socket.socket) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.proxy_sock)
        except OSError as exc:
            upstream.close()
            self._refuse(client, exc.strerror or str(exc))
            return
        done: list = []
        _thread.start_new_thread(_pump, (upstream, client, done))
        _pump(client, upstream, done)

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
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
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
        if "ready_fd" in self.config:  # (docker: the control socket's path appearing says ready)
            os.write(self.config["ready_fd"], b"ready\n")
            os.close(self.config["ready_fd"])
            # The host answers once every process of the sandbox is in its cgroups; before that no
            # request is served. No answer (the host gave up): the sandbox ends here.
            if os.read(self.config["go_fd"], 16) != b"go\n":
                log("the host did not confirm the start: exiting")
                return
            os.close(self.config["go_fd"])
        log(f"sandbox {self.name} ready")
        handlers = {control.fileno(): (control, self.serve_exec), listener.fileno(): (listener, self.relay)}
        poller = select.poll()
        for fd in handlers:
            poller.register(fd, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                sock, handler = handlers[fd]
                try:
                    conn = socket.socket(fileno=sock._accept()[0])
                except OSError:
                    continue
                _thread.start_new_thread(handler, (conn,))


def main(config: dict) -> None:
    _thread.stack_size(512 << 10)  # many relay threads must fit a small RLIMIT_AS
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    Agent(config).run()
