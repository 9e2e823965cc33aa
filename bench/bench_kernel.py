"""Kernel start-up: plain ipykernel vs the OpenShell kernel (cold) vs the OpenShell kernel from the warm pool.

Measures, in one run and on the same machine, the time from `start_kernel()` to the first `execute_reply`
(the user's first cell). Target: sandboxed within 1.2x of plain; the warm pool faster than that.
Usage: .venv/bin/python bench/bench_kernel.py [--runs N]. Prints numbers; asserts nothing; removes its
temporary kernelspecs and workspace (and stops the pool and a proxy it started) however it ends.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _one(kernel_name: str, cwd: str) -> float:
    from jupyter_client.manager import KernelManager

    t0 = time.perf_counter()
    km = KernelManager(kernel_name=kernel_name)
    km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        reply = kc.execute_interactive("1 + 1", timeout=60, output_hook=lambda msg: None)
        assert reply["content"]["status"] == "ok", reply["content"]
        return time.perf_counter() - t0
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _wait_pool(cwd: str, timeout: float = 120) -> None:
    from jupyter_openshell.kernel import pool

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with pool._lock:
            if any(p.ready and p.config.workspace == cwd for p in pool._pools.values()):
                return
        time.sleep(0.05)
    errors = [p.last_error for p in pool._pools.values() if p.last_error]
    raise RuntimeError(f"the warm pool did not fill: {errors}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from ipykernel.kernelspec import install as install_plain

    from jupyter_openshell.kernel import pool
    from jupyter_openshell.kernel.kernelspec import install
    from jupyter_openshell.proxy import ProxyClient

    proxy_was_running = ProxyClient().is_running()

    prefix = tempfile.mkdtemp(prefix="openshell-bench-")
    cwd = tempfile.mkdtemp(prefix="openshell-bench-ws-")
    results: dict[str, list[float]] = {
        "plain ipykernel": [],
        "openshell (cold)": [],
        "openshell (warm pool)": [],
    }
    try:
        install_plain(prefix=prefix, kernel_name="plain-python")
        install(prefix=prefix, name="openshell-cold", pool_size=0)
        install(prefix=prefix, name="openshell-warm", pool_size=1)
        os.environ["JUPYTER_PATH"] = str(Path(prefix) / "share" / "jupyter")
        for name in ("plain-python", "openshell-cold", "openshell-warm"):  # page cache warm; the pool primed
            _one(name, cwd)
        for _ in range(args.runs):  # interleaved, so that machine noise hits every variant alike
            results["plain ipykernel"].append(_one("plain-python", cwd))
            results["openshell (cold)"].append(_one("openshell-cold", cwd))
            _wait_pool(cwd)
            results["openshell (warm pool)"].append(_one("openshell-warm", cwd))
    finally:  # nothing is left: pooled sandboxes, the proxy it started, the kernelspecs, the workspace
        pool.shutdown_pools()
        if not proxy_was_running:  # creating sandboxes started it
            ProxyClient().stop()
        shutil.rmtree(prefix, ignore_errors=True)
        shutil.rmtree(cwd, ignore_errors=True)

    plain = statistics.median(results["plain ipykernel"])
    print(
        f"kernel start -> first execute_reply, {args.runs} runs each, median (min..max); "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    for label, values in results.items():
        med = statistics.median(values)
        print(
            f"  {label:24} {med * 1000:7.0f} ms  ({min(values) * 1000:.0f}..{max(values) * 1000:.0f})  "
            f"{med / plain:4.2f}x plain"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
