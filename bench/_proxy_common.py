"""Shared parts of the proxy benchmarks: a fast loopback upstream (separate process), a raw HTTP/1.1
load generator (keep-alive, plain or through CONNECT+TLS), and starters for our proxy and for a bare
mitmdump with a no-op addon. Loopback only; `Procs.close()` stops everything started here and removes
its temporary directory (also on error).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
NOOP_ADDON = "class Noop:\n    def request(self, flow):\n        pass\n\naddons = [Noop()]\n"
SMALL = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# --- upstream (run as `python _proxy_common.py upstream PORT [CERT KEY]`) -----------------------

class _Upstream(asyncio.Protocol):
    def connection_made(self, transport):
        self.t: asyncio.Transport = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while (i := self.buf.find(b"\r\n\r\n")) >= 0:
            head, self.buf = self.buf[:i], self.buf[i + 4:]
            path = head.split(b" ", 2)[1]
            if path.startswith(b"/bytes/"):
                n = int(path.split(b"/")[2])
                self.t.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: %d\r\n\r\n" % n)
                self.task = asyncio.ensure_future(self._stream(n))
            else:
                self.t.write(SMALL)

    async def _stream(self, n: int) -> None:
        chunk = b"x" * (1 << 20)
        while n > 0:
            self.t.write(chunk[: min(n, len(chunk))])
            n -= len(chunk)
            while self.t.get_write_buffer_size() > 8 << 20:
                await asyncio.sleep(0.001)


def _run_upstream(port: int, cert: str | None, key: str | None) -> None:
    ctx = None
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)

    async def main():
        server = await asyncio.get_running_loop().create_server(_Upstream, "127.0.0.1", port, ssl=ctx)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Procs:
    """Processes started by a benchmark, all stopped on exit."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Any] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="openshell-bench-"))
        os.chmod(self.tmp, 0o700)

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"proc{len(self.procs)}.log", "wb")  # noqa: SIM115 (closed in close())
        self.logs.append(log)
        p = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})}, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)

    def close(self) -> None:
        """Stop every process, then remove the temporary directory (state, CA, logs), whatever fails."""
        try:
            for p in self.procs:
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    self.stop(p)
        finally:
            for log in self.logs:
                log.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def test_ca(self):
        sys.path.insert(0, str(ROOT))
        from jupyter_openshell.testing import TestCA

        ca = TestCA(self.tmp / "ca")
        cert, key = ca.server_files(["127.0.0.1", "localhost"])
        return ca.ca_path, cert, key

    def upstream(self, tls: tuple[Path, Path] | None = None) -> int:
        port = free_port()
        argv = [PY, __file__, "upstream", str(port)] + ([str(tls[0]), str(tls[1])] if tls else [])
        self.start(argv)
        wait_port(port)
        return port

    def bare_mitmdump(self, upstream_ca: Path | None) -> int:
        port = free_port()
        addon = self.tmp / "noop.py"
        addon.write_text(NOOP_ADDON)
        conf = self.tmp / "bare-conf"
        conf.mkdir(exist_ok=True)
        argv = [str(Path(PY).parent / "mitmdump"), "-q", "--listen-host", "127.0.0.1",
                "--listen-port", str(port), "-s", str(addon), "--set", f"confdir={conf}"]
        if upstream_ca:
            argv += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
        self.start(argv)
        wait_port(port)
        return port

    def our_proxy(self, policy: str, upstream_ca: Path | None, workers: int = 1,
                  name: str = "ours") -> tuple[int, Path, subprocess.Popen]:
        state = self.tmp / f"state-{name}"
        state.mkdir(mode=0o700, exist_ok=True)
        policy_file = state / "policy.yaml"
        policy_file.write_text(policy)
        port = free_port()
        argv = [PY, "-m", "jupyter_openshell", "proxy", "--policy", str(policy_file), "--listen",
                f"127.0.0.1:{port}", "--workers", str(workers), "--state-dir", str(state)]
        if upstream_ca:
            argv += ["--upstream-ca", str(upstream_ca)]
        p = self.start(argv, env={"PYTHONPATH": str(ROOT)})
        wait_port(port, 30)
        deadline = time.monotonic() + 30
        while not (state / "run" / "proxy.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return port, state, p


def bench_policy(port: int, filler: int = 50) -> str:
    """A realistic policy: `filler` unrelated rules, then the rule that allows the benchmark path."""
    rules = []
    for i in range(filler):
        rules.append(f'    - host: "svc{i}.example.com"\n      paths:\n        - path: "/api/v{i}/**"\n'
                     f'          methods: ["GET", "POST"]\n      action: allow\n')
    rules.append(f'    - host: "127.0.0.1"\n      ports: [{port}]\n      paths:\n        - path: "/small"\n'
                 f'          methods: ["GET"]\n        - path: "/bytes/*"\n          methods: ["GET"]\n'
                 f'      action: allow\n')
    return "network:\n  egress:\n" + "".join(rules)


# --- load generator ---------------------------------------------------------------------------

async def _open(target_port: int, up_port: int, proxy: bool, tls: bool, cafile: Path | None):
    if not tls:
        return await asyncio.open_connection("127.0.0.1", target_port)
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False
    if proxy:
        raw = socket.create_connection(("127.0.0.1", target_port))
        raw.sendall(f"CONNECT 127.0.0.1:{up_port} HTTP/1.1\r\nHost: 127.0.0.1:{up_port}\r\n\r\n".encode())
        resp = b""
        while b"\r\n\r\n" not in resp:
            resp += raw.recv(4096)
        assert resp.startswith(b"HTTP/1.1 200"), resp
        raw.setblocking(False)
        return await asyncio.open_connection(sock=raw, ssl=ctx, server_hostname="127.0.0.1")
    return await asyncio.open_connection("127.0.0.1", target_port, ssl=ctx, server_hostname="127.0.0.1")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    got = 0
    while got < length:
        chunk = await reader.read(min(1 << 20, length - got))
        if not chunk:
            raise ConnectionError("short body")
        got += len(chunk)
    return status, got


def load(target_port: int, up_port: int, *, proxy: bool, tls: bool, conns: int, seconds: float,
         cafile: Path | None = None, path: str = "/small") -> dict[str, float]:
    """Keep-alive GETs on `conns` connections for `seconds`; returns req/s and latency p50/p99 (ms)."""

    async def worker(lat: list[float], stop_at: float, errors: list[int]):
        reader, writer = await _open(target_port, up_port, proxy, tls, cafile)
        absolute = proxy and not tls
        target = f"http://127.0.0.1:{up_port}{path}" if absolute else path
        req = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{up_port}\r\n\r\n".encode()
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(req)
            status, _ = await _read_response(reader)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(status)
        writer.close()

    async def main():
        lat: list[float] = []
        errors: list[int] = []
        warm_until = time.perf_counter() + 0.3
        await asyncio.gather(*(worker([], warm_until, errors) for _ in range(conns)))
        start = time.perf_counter()
        await asyncio.gather(*(worker(lat, start + seconds, errors) for _ in range(conns)))
        elapsed = time.perf_counter() - start
        if errors:
            raise RuntimeError(f"{len(errors)} non-200 answers, e.g. {errors[0]}")
        return summary(lat, elapsed)

    return asyncio.run(main())


if __name__ == "__main__" and sys.argv[1:2] == ["upstream"]:
    _run_upstream(int(sys.argv[2]), *(sys.argv[3:5] if len(sys.argv) > 3 else (None, None)))


def summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    """req/s, p50 and p99 (ms) and the count of a load run."""
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": q[49] * 1000, "p99": q[98] * 1000, "n": len(latencies)}


def load_plain(port: int, up_port: int, *, conns: int, seconds: float,
               path: str = "/small") -> dict[str, float]:
    """`load` for plain HTTP through a proxy, lighter on the client: non-blocking sockets on one
    selector instead of asyncio streams (about half the client CPU per request). Where the client
    shares two cores with the proxy processes, its own CPU caps what a second worker can show."""
    req = f"GET http://127.0.0.1:{up_port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{up_port}\r\n\r\n".encode()

    def run(stop_at: float, lat: list[float]) -> int:
        sel = selectors.DefaultSelector()
        errors = 0
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, [b"", time.perf_counter()])
            s.send(req)
        while sel.get_map():
            for key, _ in sel.select(5):
                sock, st = key.fileobj, key.data
                data = sock.recv(65536)  # type: ignore[union-attr]
                if not data:
                    raise ConnectionError("the proxy closed a keep-alive connection")
                buf = st[0] + data
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    st[0] = buf
                    continue
                head = buf[:end].lower()
                i = head.find(b"content-length:")
                length = int(head[i + 15:].split(b"\r\n", 1)[0]) if i >= 0 else 0
                if len(buf) < end + 4 + length:
                    st[0] = buf
                    continue
                errors += not head.startswith(b"http/1.1 200")
                now = time.perf_counter()
                lat.append(now - st[1])
                st[0] = buf[end + 4 + length:]
                if now >= stop_at:
                    sel.unregister(sock)
                    sock.close()  # type: ignore[union-attr]
                else:
                    st[1] = now
                    sock.send(req)  # type: ignore[union-attr]
        sel.close()
        return errors

    run(time.perf_counter() + 0.3, [])
    lat: list[float] = []
    start = time.perf_counter()
    errors = run(start + seconds, lat)
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{errors} non-200 answers")
    return summary(lat, elapsed)
