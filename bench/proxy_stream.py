"""A 1 GB download streamed through the policy proxy: MB/s and the proxy's peak RSS, beside a direct
download and a bare mitmdump (no-op addon, same streaming threshold) in the same run.

Targets: >= 300 MB/s through the proxy, proxy RSS < 150 MB.
Usage: .venv/bin/python bench/proxy_stream.py [--mb 1024]
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

import psutil
from _proxy_common import Procs, bench_policy, free_port, wait_port


def download(port: int, up: int, size: int, proxy: bool, pid: int | None) -> tuple[float, float]:
    """Returns (MB/s, peak RSS MB of process `pid` and its children)."""
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        proc = psutil.Process(pid) if pid else None
        while not done.is_set() and proc is not None:
            try:
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.Error:
                break
            peak[0] = max(peak[0], rss)
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    s = socket.create_connection(("127.0.0.1", port))
    target = f"http://127.0.0.1:{up}/bytes/{size}" if proxy else f"/bytes/{size}"
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n".encode())
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    head = b""
    start = time.perf_counter()
    while b"\r\n\r\n" not in head:
        n = s.recv_into(view)
        head += bytes(view[:n])
    header, _, rest = head.partition(b"\r\n\r\n")
    assert header.startswith(b"HTTP/1.1 200"), header
    got = len(rest)
    while got < size:
        n = s.recv_into(view)
        if not n:
            raise ConnectionError(f"short body: {got} of {size}")
        got += n
    elapsed = time.perf_counter() - start
    s.close()
    done.set()
    t.join()
    return size / elapsed / 1e6, peak[0] / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    args = ap.parse_args()
    size = args.mb * 1024 * 1024
    with Procs() as procs:
        up = procs.upstream()
        ours, _, ours_proc = procs.our_proxy(bench_policy(up), None)
        bare_port = free_port()
        addon = procs.tmp / "noop.py"
        addon.write_text("addons = []\n")
        mitmdump = str(Path(sys.executable).parent / "mitmdump")
        bare_proc = procs.start([mitmdump, "-q", "--listen-host", "127.0.0.1",
                                 "--listen-port", str(bare_port), "-s", str(addon), "--set",
                                 f"confdir={procs.tmp / 'bare-conf'}", "--set", "stream_large_bodies=256k"])
        wait_port(bare_port)
        rows = [("direct", *download(up, up, size, False, None)),
                ("bare mitmdump", *download(bare_port, up, size, True, bare_proc.pid)),
                ("policy proxy", *download(ours, up, size, True, ours_proc.pid))]
        print(f"{args.mb} MB streamed download over loopback")
        for name, mbps, rss in rows:
            print(f"{name:<15}{mbps:>9.0f} MB/s   peak RSS {rss:>6.0f} MB" if rss else
                  f"{name:<15}{mbps:>9.0f} MB/s")
        print(f"policy proxy: {rows[2][1]:.0f} MB/s (target >= 300), RSS {rows[2][2]:.0f} MB (target < 150); "
              f"bare mitmdump {rows[1][1]:.0f} MB/s")


if __name__ == "__main__":
    main()
