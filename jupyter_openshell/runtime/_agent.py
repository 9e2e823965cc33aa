"""The in-sandbox agent: PID 2 of every sandbox (bubblewrap's reaper is PID 1).

Started by bubblewrap as `python -I -S -B -c BOOT FD` (`_agent_boot.AGENT_BOOT`): FD holds, marshalled, the
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
One thread, one epoll loop, no process or thread per connection or command: whatever the sandbox's
code does (fork bombs at pids.max, thousands of idle connections, fd exhaustion) the agent needs no new
task to keep serving. The relay holds at most `relay_max` connections (a new one past that takes the
slot of the longest idle connection if it has been idle `EVICT_IDLE_S`, else is answered 503
`X-OpenShell-Error: relay-busy`), closes a connection that sent nothing for `FIRST_BYTE_S` or moved
nothing for `IDLE_S`, and buffers at most `CHUNK` bytes per direction (it stops reading a side whose
peer does not drain). When this process exits, the sandbox ends (the PID namespace is torn down). It
must never reach anything outside the sandbox except through the gateway socket, and never log command
arguments or environment (they may hold secrets).
"""

from __future__ import annotations

import _signal as signal
import _socket as socket
import errno
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
_BUSY = (
    "openshell: sandbox {name} already has {count} connections open through its proxy relay (the\n"
    "limit). Close idle connections (or reuse them: keep-alive) and retry.\n"
)
_CD_THEN_EXEC = 'cd -- "$0" && exec "$@"'  # posix_spawn cannot chdir: a shell does it for other cwds
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RELAY_MAX = 256  # connections through the relay at once (config "relay_max")
FIRST_BYTE_S = 30.0  # a connection that sent nothing this long is closed
IDLE_S = 900.0  # a connection that moved nothing this long is closed
EVICT_IDLE_S = 2.0  # at the limit, a connection idle this long gives its slot to a new one
REFUSE_S = 2.0  # how long a refused connection may take to send its request head
CHUNK = 65536
EXEC_IO_S = 5.0  # the host writes each frame at once: a longer wait is a broken host
CONNECT_WAIT_S = 5.0  # how long a connection waits for room in the gateway's backlog
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_GONE = select.EPOLLHUP | select.EPOLLERR


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


class Link:
    """One relayed connection: the client's TCP socket and the gateway socket (None while refusing).
    `out[0]` waits to go to the client, `out[1]` to the gateway."""

    __slots__ = ("client", "eof", "last", "out", "refusal", "started", "upstream", "used")

    def __init__(self, client: socket.socket, upstream: socket.socket | None, now: float) -> None:
        self.client = client
        self.upstream = upstream
        self.out = [b"", b""]
        self.eof = [False, False]  # read end reached: [client, upstream]
        self.started = self.last = now
        self.used = False  # the client sent something
        self.refusal = b""  # refusing: the response to send once the request head is in

    def sockets(self) -> tuple[socket.socket, ...]:
        return (self.client,) if self.upstream is None else (self.client, self.upstream)


class Agent:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.name = config["name"]
        self.proxy_sock = config["proxy_sock"]
        self.env = config["env"]
        self.workdir = config["workdir"]
        self.relay_max = int(config.get("relay_max") or RELAY_MAX)
        self.poller: select.epoll  # (made by `run`, after `setup` closed every inherited fd)
        self.handlers: dict[int, tuple] = {}  # fd -> (callback, args, events)
        self.closed: set[int] = set()  # fds unwatched during this round of events
        self.links: dict[int, Link] = {}  # client fd -> relayed connection
        self.refused: dict[int, Link] = {}  # client fd -> connection being answered 502/503
        self.unwatched: dict[int, socket.socket] = {}  # commands without a pidfd (fds ran out)
        self.waiting: dict[int, tuple] = {}  # client fd -> (client, since): the gateway's backlog was full
        self.listener: socket.socket | None = None
        self.paused_until = 0.0  # accept() ran out of fds: retry then

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
        listener.listen(1024)
        listener.setblocking(False)
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

    def _watch(self, sock_or_fd, events: int, callback, *args) -> None:
        """On `events` of the fd, call `callback(events, *args)`."""
        fd = sock_or_fd if isinstance(sock_or_fd, int) else sock_or_fd.fileno()
        known = self.handlers.get(fd)
        if known is None:
            self.poller.register(fd, events)
        elif known[2] != events:
            self.poller.modify(fd, events)
        self.handlers[fd] = (callback, args, events)

    def _unwatch(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            _quietly(self.poller.unregister, fd)
            self.closed.add(fd)  # (its number may be reused before this round's other events)

    # --- exec ---------------------------------------------------------------------------------
    def accept_exec(self, events: int, control: socket.socket) -> None:
        try:
            conn = socket.socket(fileno=control._accept()[0])
        except OSError:
            return
        # Only the host may ask: a process of this sandbox has a pid in its namespace, the host's is 0.
        cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        if int.from_bytes(cred[:4], sys.byteorder) != 0:
            log("refused an exec connection from inside the sandbox")
            conn.close()
            return
        conn.settimeout(EXEC_IO_S)
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
        if pid is None:
            conn.close()
            return
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # (our own child: only fd exhaustion; `_expire` polls it instead)
            self.unwatched[pid] = conn
            return
        self._watch(pidfd, _IN, self._on_exit, pidfd, conn, pid)
        self._watch(conn, _IN, self._on_frame, conn, pid)

    def _spawn(self, conn: socket.socket, request: dict, fds: list[int]) -> int | None:
        argv = [str(a) for a in request.get("argv") or []]
        env = dict(self.env)
        env.update(request.get("env") or {})
        cwd = request.get("cwd") or self.workdir
        path = _which(argv[0], env, cwd) if argv else None
        if path is None:
            return self._fail(
                conn, fds, f"openshell: {argv[0] if argv else '(empty command)'}: command not found", 127
            )
        if os.path.realpath(cwd) != os.getcwd():
            argv, path = ["/bin/sh", "-c", _CD_THEN_EXEC, cwd, path, *argv[1:]], "/bin/sh"
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds[:3])]
        try:
            pid = os.posix_spawn(
                path, argv, env, file_actions=actions, setsid=True, setsigdef=_DEFAULT_SIGNALS
            )
        except OSError as exc:
            why = exc.strerror
            if exc.errno == errno.EAGAIN:
                why += " (the sandbox is at its process limit: end some of its processes)"
            return self._fail(conn, fds, f"openshell: cannot run {argv[0]}: {why}", 126)
        self._reply(conn, pid=pid)  # (first: the command may stop this agent any moment now)
        log(f"exec pid {pid}: {os.path.basename(argv[0])}")
        return pid

    def _fail(self, conn: socket.socket, fds: list[int], message: str, code: int) -> None:
        """The command could not start: say why on its stderr and in the reply."""
        if len(fds) > 2:
            _quietly(os.write, fds[2], (message + "\n").encode())
        self._reply(conn, error=message, exit=code)

    def _on_frame(self, events: int, conn: socket.socket, pid: int) -> None:
        message = _wire.recv_frame(conn)
        if message is None:  # the caller went away: end what it started
            _killpg(pid, signal.SIGKILL)
            self._unwatch(conn.fileno())
        elif "signal" in message:
            _killpg(pid, int(message["signal"]))

    def _on_exit(self, events: int, pidfd: int, conn: socket.socket, pid: int) -> None:
        self._unwatch(pidfd)
        self._unwatch(conn.fileno())
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        os.close(pidfd)
        log(f"exit pid {pid}: {code}")
        self._reply(conn, exit=code)
        conn.close()

    @staticmethod
    def _reply(conn: socket.socket, **fields: int | str) -> None:
        _quietly(lambda: _wire.reply(conn, **fields))

    # --- proxy relay --------------------------------------------------------------------------
    def accept_relay(self, events: int, listener: socket.socket) -> None:
        now = time.monotonic()
        for _ in range(64):  # (a few per wake-up: exec requests are served in between)
            if len(self.refused) >= self.relay_max:  # (they wait in the backlog meanwhile)
                self._pause_accept(now)
                return
            try:
                fd, _addr = listener._accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause_accept(now)
                return
            client = socket.socket(fileno=fd)
            client.setblocking(False)
            if len(self.links) + len(self.waiting) >= self.relay_max and not self._evict(now):
                self._refuse(
                    client, now, 503, "relay-busy", _BUSY.format(name=self.name, count=self.relay_max)
                )
            else:
                self._open(client, now)

    def _pause_accept(self, now: float) -> None:
        if self.listener is not None:
            self._unwatch(self.listener.fileno())
        self.paused_until = now + 0.1

    def _evict(self, now: float) -> bool:
        """Make room for a new connection (True if one went): close the oldest connection that never
        sent a byte (a client sends its request as soon as it connects), else the longest idle one
        if it has been idle EVICT_IDLE_S."""
        silent = next((link for link in self.links.values() if not link.used), None)  # (dicts keep order)
        idle = silent or min(self.links.values(), key=lambda link: link.last, default=None)
        if idle is None or (silent is None and now - idle.last < EVICT_IDLE_S):
            return False
        self._close(idle)
        return True

    def _open(self, client: socket.socket, now: float, since: float | None = None) -> None:
        _quietly(client.setsockopt, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.setblocking(False)
        try:
            upstream.connect(self.proxy_sock)
        except BlockingIOError:  # (UNIX sockets: the gateway's backlog is full, for now)
            upstream.close()
            if now - (since or now) < CONNECT_WAIT_S:
                self.waiting[client.fileno()] = (client, since or now)
            else:
                self._refuse(client, now, 503, "proxy-busy", "openshell: the policy proxy is busy; retry.\n")
            return
        except OSError as exc:
            upstream.close()
            why = exc.strerror or str(exc)
            log(f"proxy unreachable ({why}): refused a connection with 502")
            self._refuse(client, now, 502, "proxy-unreachable", _PROXY_DOWN.format(name=self.name, why=why))
            return
        link = Link(client, upstream, now)
        self.links[client.fileno()] = link
        self._watch(client, _IN, self._on_link, client, link)
        self._watch(upstream, _IN, self._on_link, upstream, link)

    def _on_link(self, events: int, sock: socket.socket, link: Link) -> None:
        side = 0 if sock is link.client else 1  # 0: the client's socket, 1: the gateway's
        other = link.upstream if side == 0 else link.client
        if events & select.EPOLLERR or (events & select.EPOLLHUP and link.eof[side]):
            self._close(link)  # (reset, or hung up with nothing left to read: nothing can pass)
            return
        if events & _OUT and not self._send(link, side, sock):
            return
        if events & (_IN | _GONE) and not link.eof[side] and (not link.out[1 - side] or events & _GONE):
            try:
                data = sock.recv(CHUNK)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data is not None:
                link.last = time.monotonic()
                link.used = link.used or side == 0
                if data:
                    link.out[1 - side] += data
                    if not self._send(link, 1 - side, other):
                        return
                else:
                    link.eof[side] = True
                    if not link.out[1 - side]:
                        _quietly(other.shutdown, socket.SHUT_WR)
        if link.eof[0] and link.eof[1] and not link.out[0] and not link.out[1]:
            self._close(link)
            return
        for index, each in enumerate(link.sockets()):  # (reading a side waits until its peer drained)
            wanted = 0 if link.eof[index] or link.out[1 - index] else _IN
            self._watch(each, wanted | (_OUT if link.out[index] else 0), self._on_link, each, link)

    def _send(self, link: Link, side: int, sock: socket.socket) -> bool:
        """Write what waits for `side` as far as its socket takes it (False: the link is closed)."""
        try:
            sent = sock.send(link.out[side])
        except BlockingIOError:
            return True
        except OSError:
            self._close(link)
            return False
        link.out[side] = link.out[side][sent:]
        link.last = time.monotonic()
        if not link.out[side] and link.eof[1 - side]:
            _quietly(sock.shutdown, socket.SHUT_WR)  # (the other side ended: pass it on)
        return True

    def _refuse(self, client: socket.socket, now: float, status: int, error: str, text: str) -> None:
        """Answer `status` once the request head is in (at the latest after REFUSE_S), then close."""
        body = text.encode()
        reason = {502: "Bad Gateway", 503: "Service Unavailable"}[status]
        link = Link(client, None, now)
        link.refusal = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"X-OpenShell-Error: {error}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.refused[client.fileno()] = link
        self._watch(client, _IN, self._on_refused, link)

    def _on_refused(self, events: int, link: Link) -> None:
        """Read the request head (then drain what follows until the client closes: closing with
        unread data would reset the connection before the client reads the answer)."""
        try:
            data = link.client.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data and not link.refusal:
            self._close(link)
            return
        link.out[1] += data if link.refusal else b""
        if not data or b"\r\n\r\n" in link.out[1] or len(link.out[1]) > CHUNK:
            self._answer(link)

    def _answer(self, link: Link) -> None:
        if link.refusal:
            _quietly(link.client.send, link.refusal)  # (a few hundred bytes into a fresh socket)
            _quietly(link.client.shutdown, socket.SHUT_WR)
            link.refusal, link.out[1], link.last = b"", b"", time.monotonic()

    def _close(self, link: Link) -> None:
        self.links.pop(link.client.fileno(), None)
        self.refused.pop(link.client.fileno(), None)
        for sock in link.sockets():
            self._unwatch(sock.fileno())
            sock.close()

    def _expire(self, now: float) -> None:
        """Close connections past their timeouts; answer refused ones that never sent a head."""
        for link in list(self.refused.values()):
            if link.refusal and now - link.started >= REFUSE_S:
                self._answer(link)
            elif not link.refusal and now - link.last >= REFUSE_S:
                self._close(link)
        for link in list(self.links.values()):
            if now - link.last >= IDLE_S or (not link.used and now - link.started >= FIRST_BYTE_S):
                self._close(link)
        for pid, conn in list(self.unwatched.items()):
            if os.waitpid(pid, os.WNOHANG)[0]:
                del self.unwatched[pid]
                self._reply(conn, exit=-signal.SIGKILL)  # (status lost: reported as killed)
                conn.close()

    # --- main loop ----------------------------------------------------------------------------
    def run(self) -> None:
        control, listener = self.setup()
        self.poller, self.listener = select.epoll(), listener
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
        self._watch(control, _IN, self.accept_exec, control)
        self._watch(listener, _IN, self.accept_relay, listener)
        next_sweep = time.monotonic() + 1.0
        while True:
            try:
                ready = self.poller.poll(0.02 if self.waiting else 0.1 if self.paused_until else 1.0)
            except InterruptedError:
                continue
            self.closed.clear()
            for fd, events in ready:
                handler = self.handlers.get(fd)
                if handler is None or fd in self.closed:
                    continue  # (closed by an earlier event of this round)
                callback, args, _events = handler
                try:
                    callback(events, *args)
                except Exception as exc:  # (e.g. MemoryError at a low RLIMIT_AS: the agent goes on)
                    log(f"relay/exec error: {type(exc).__name__}: {exc}")
            now = time.monotonic()
            waiting, self.waiting = self.waiting, {}
            for client, since in waiting.values():  # (in order of arrival)
                self._open(client, now, since)
            if self.paused_until and now >= self.paused_until:
                self.paused_until = 0.0
                self._watch(listener, _IN, self.accept_relay, listener)
            if now >= next_sweep:
                self._expire(now)
                next_sweep = now + 1.0


def main(config: dict) -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    Agent(config).run()
