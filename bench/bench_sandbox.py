"""Local sandbox runtime numbers: create + exec `true` + destroy latency (target p50 < 50 ms), exec
latency in a running sandbox, memory (PSS) per idle sandbox, and HTTP requests/s through the
sandbox-to-proxy channel (agent -> gateway socket -> proxy) compared with the same client using the
proxy directly from the host. Everything runs in a private state directory on loopback.

Usage: .venv/bin/python bench/bench_sandbox.py [--cycles 30] [--execs 100] [--idle 10] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATE = Path(tempfile.mkdtemp(prefix="openshell-bench-"))
os.environ["OPENSHELL_STATE_DIR"] = str(STATE)

from jupyter_openshell.proxy import ProxyClient  # noqa: E402  (after the state dir is chosen)
from jupyter_openshell.runtime import SandboxSpec, get_backend  # noqa: E402
from jupyter_openshell.testing import start_proxy  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _proxy_common import Procs  # noqa: E402  (the proxy benchmarks' fast asyncio upstream)

CLIENT = """
import http.client, sys, time
proxy_host, proxy_port, port, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
conn = http.client.HTTPConnection(proxy_host, proxy_port)
url = f"http://127.0.0.1:{port}/bench"
n, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    conn.request("GET", url)
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200, resp.status
    n += 1
print(n / seconds)
"""
POLICY = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{port}]
      paths:
        - path: "/bench"
          methods: ["GET"]
      action: allow
    - action: deny
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 0.5) * 1000:7.1f} ms   p99 {pct(values, 0.99) * 1000:7.1f} ms"


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--execs", type=int, default=100)
    ap.add_argument("--idle", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    backend = get_backend()
    with Procs() as procs:
        upstream_port = procs.upstream()
        policy = STATE / "bench-policy.yaml"
        policy.write_text(POLICY.format(port=upstream_port))
        proxy = start_proxy(STATE, policy)
        try:
            backend.create(SandboxSpec(name="warmup"))
            backend.destroy("warmup")

            cycle = []
            for i in range(args.cycles):
                start = time.perf_counter()
                backend.create(SandboxSpec(name=f"c{i}"))
                assert backend.exec(f"c{i}", ["true"]).wait(30) == 0
                backend.destroy(f"c{i}")
                cycle.append(time.perf_counter() - start)
            print(f"create + exec true + destroy ({args.cycles}x):  {ms(cycle)}   (target p50 < 50 ms)")

            info = backend.create(SandboxSpec.from_policy_file(policy, name="run"))
            execs = []
            for _ in range(args.execs):
                start = time.perf_counter()
                assert backend.exec("run", ["true"]).wait(30) == 0
                execs.append(time.perf_counter() - start)
            print(f"exec true in a running sandbox ({args.execs}x):   {ms(execs)}")

            idle = [backend.create(SandboxSpec(name=f"idle{i}")) for i in range(args.idle)]
            time.sleep(0.5)
            per = [sum(pss_kib(p) for p in tree(i.details["pid"])) for i in idle if i.details.get("pid")]
            print(
                f"memory per idle sandbox ({args.idle}x, PSS of shim+bwrap+agent): "
                f"{statistics.mean(per) / 1024:.1f} MiB mean, {max(per) / 1024:.1f} MiB max "
                f"[{info.enforcement['resources']}]"
            )
            for i in idle:
                backend.destroy(i.name)

            env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
            direct = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CLIENT,
                    "127.0.0.1",
                    str(proxy.port),
                    str(upstream_port),
                    str(args.seconds),
                ],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            inside = backend.exec(
                "run",
                ["python3", "-c", CLIENT, "127.0.0.1", "3128", str(upstream_port), str(args.seconds)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = inside.communicate(timeout=args.seconds + 60)
            assert inside.returncode == 0, err
            rps_direct, rps_inside = float(direct.stdout), float(out)
            print(f"HTTP keep-alive GET, 1 connection, {args.seconds:.0f} s each:")
            print(f"  host -> proxy (direct):                  {rps_direct:8.0f} req/s")
            print(
                f"  sandbox -> agent -> gateway -> proxy:    {rps_inside:8.0f} req/s "
                f"({100 * rps_inside / rps_direct:.0f}% of direct)"
            )
            backend.destroy("run")
        finally:
            for leftover in backend.list():
                backend.destroy(leftover.name)
            proxy.stop()
            ProxyClient(STATE).stop()
            shutil.rmtree(STATE, ignore_errors=True)
            shutil.rmtree(procs.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
