"""Runs INSIDE a sandbox pod for each exec: starts one command and speaks a framed protocol with the host
over the exec stream's stdin/stdout, so that streaming, stdin EOF, signals and the exact exit status work
as with the local backend's agent (the Kubernetes exec API alone has no signals, no stdin EOF before v5,
and one exit code for both "exited 130" and "killed by SIGINT").

Started as `python3 -I -S -B -c BOOT` (`BOOT` below: it reads this file's source, length-prefixed, from
stdin and runs it), so nothing but python3 is needed in the image and no argument or environment of the
command appears in the exec request (API audit logs); only BOOT does. Frames both ways:
1 type byte + 4-byte big-endian length + payload.
  host -> here: c config JSON {argv, env, cwd, stdout, stderr, stdin, rlimits, response}, i stdin
                bytes, e stdin EOF, s signal number (ASCII) for the command's process group
  here -> host: p pid, o stdout bytes, r stderr bytes, a what the command wrote to its response pipe
                (fd named by $OPENSHELL_RESPONSE_FD: a kernel announces its connection here),
                E error text (the command did not start), x exit JSON {"exit": n} or {"signal": n}
The command runs in a new session with default signal dispositions, the pod's environment plus `env`.
When the host's stream ends (stdin EOF on the frame channel), the command's process group is killed, as
a dropped connection does locally. Stdlib only; it must never run anything but the command it is given,
and never write a frame the host did not ask for.
"""

import contextlib
import json
import os
import resource
import select
import signal
import struct
import sys

BOOT = (
    "import os\n"
    "def r(n):\n"
    "    b = b''\n"
    "    while len(b) < n:\n"
    "        c = os.read(0, n - len(b))\n"
    "        if not c:\n"
    "            raise SystemExit(70)\n"
    "        b += c\n"
    "    return b\n"
    "exec(compile(r(int(r(10))), '<openshell-launcher>', 'exec'), {'__name__': '__openshell__', 'read': r})\n"
)
_HEAD = struct.Struct(">cI")


def _send(kind: bytes, payload: bytes = b"") -> None:
    data = _HEAD.pack(kind, len(payload)) + payload
    while data:
        data = data[os.write(1, data) :]


class _Frames:
    """Reads host frames from fd 0 without blocking the loop (select says when)."""

    def __init__(self) -> None:
        self.buf = b""
        self.eof = False

    def feed(self) -> list:
        chunk = os.read(0, 65536)
        if not chunk:
            self.eof = True
        self.buf += chunk
        out = []
        while len(self.buf) >= _HEAD.size:
            kind, n = _HEAD.unpack_from(self.buf)
            if len(self.buf) < _HEAD.size + n:
                break
            out.append((kind, self.buf[_HEAD.size : _HEAD.size + n]))
            self.buf = self.buf[_HEAD.size + n :]
        return out


def _which(command: str, env: dict) -> str:
    if "/" in command:
        return command
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", command)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    raise FileNotFoundError(2, f"{command}: command not found")


def _spawn(config: dict) -> tuple:
    """(pid, stdin write end or None, {fd: frame type}, response read end or None)."""
    env = dict(os.environ)
    env.update(config.get("env") or {})
    fds = {}
    child_in = child_out = child_err = None
    stdin_w = response_r = response_w = None
    if config.get("stdin") == "pipe":
        child_in, stdin_w = os.pipe()
    out_r = err_r = None
    if config.get("stdout") == "pipe":
        out_r, child_out = os.pipe()
        fds[out_r] = b"o"
    if config.get("stderr") == "pipe":
        err_r, child_err = os.pipe()
        fds[err_r] = b"r"
    elif config.get("stderr") == "stdout":
        child_err = child_out
    if config.get("response"):
        response_r, response_w = os.pipe()
        env["OPENSHELL_RESPONSE_FD"] = str(response_w)
    errors_r, errors_w = os.pipe()
    argv = config["argv"]
    pid = os.fork()
    if pid == 0:  # the command
        try:
            os.close(errors_r)
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for target, source in ((0, child_in), (1, child_out), (2, child_err)):
                os.dup2(null if source is None else source, target)
            keep = {0, 1, 2, errors_w} | ({response_w} if response_w is not None else set())
            for fd in range(3, 1024):
                if fd not in keep:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            if response_w is not None:
                os.set_inheritable(response_w, True)
            for name, value in (config.get("rlimits") or {}).items():
                limit = getattr(resource, f"RLIMIT_{name.upper()}")
                resource.setrlimit(limit, (value, value))
            if config.get("cwd"):
                os.chdir(config["cwd"])
            for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            os.execve(_which(argv[0], env), argv, env)
        except BaseException as exc:
            message = f"{argv[0]}: {getattr(exc, 'strerror', None) or exc}"
            os.write(errors_w, message.encode(errors="replace")[:4000])
        os._exit(127)
    os.close(errors_w)
    for fd in {child_in, child_out, child_err, response_w} - {None}:
        os.close(fd)
    error = b""
    while chunk := os.read(errors_r, 4096):
        error += chunk
    os.close(errors_r)
    if error:
        os.waitpid(pid, 0)
        raise OSError(error.decode(errors="replace"))
    return pid, stdin_w, fds, response_r


def _signal(pid: int, sig: int) -> None:
    for kill, target in ((os.killpg, pid), (os.kill, pid)):
        try:
            kill(target, sig)
            return
        except (ProcessLookupError, PermissionError):
            continue


def _drain(outs: dict) -> None:
    """Send what the output pipes hold now (without waiting for writers that may still hold them)."""
    while outs:
        ready, _, _ = select.select(list(outs), [], [], 0)
        if not ready:
            return
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                _send(outs[fd], data)
            else:
                os.close(fd)
                del outs[fd]


def main() -> None:
    frames = _Frames()
    config = None
    while config is None:
        select.select([0], [], [])
        for kind, payload in frames.feed():
            if kind == b"c":
                config = json.loads(payload)
        if frames.eof and config is None:
            os._exit(70)
    try:
        pid, stdin_w, outs, response_r = _spawn(config)
    except OSError as exc:
        _send(b"E", str(exc).encode())
        _send(b"x", b'{"exit": 127}')
        return
    _send(b"p", str(pid).encode())
    if response_r is not None:
        outs[response_r] = b"a"
    status = None
    while status is None or outs:
        wait = [0, *outs] if not frames.eof else list(outs)
        ready, _, _ = select.select(wait, [], [], 0.05 if status is None else 1.0)
        for fd in ready:
            if fd == 0:
                for kind, payload in frames.feed():
                    if kind == b"i" and stdin_w is not None:
                        try:  # noqa: SIM105 - (no contextlib: start-up time)
                            os.write(stdin_w, payload)
                        except OSError:  # the command closed its stdin
                            pass
                    elif kind == b"e" and stdin_w is not None:
                        os.close(stdin_w)
                        stdin_w = None
                    elif kind == b"s":
                        _signal(pid, int(payload))
                if frames.eof and status is None:  # the host is gone: end the command, as locally
                    _signal(pid, signal.SIGKILL)
                continue
            data = os.read(fd, 65536)
            if data:
                _send(outs[fd], data)
            else:
                os.close(fd)
                del outs[fd]
        if status is None:
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                _drain(outs)  # what the command wrote before it exited comes before its exit
                code = os.waitstatus_to_exitcode(raw)
                status = {"exit": code} if code >= 0 else {"signal": -code}
                _send(b"x", json.dumps(status).encode())
                if response_r is not None and response_r in outs:  # nobody else writes it
                    os.close(response_r)
                    del outs[response_r]
        elif not ready and frames.eof:
            break


if __name__ == "__openshell__":
    main()
    sys.stdout.flush()
    os._exit(0)
