"""Docker backend numbers beside the engine's own, in one run on the same machine and image.

* create + exec `true` + destroy of a docker-backend sandbox vs `docker run --rm IMAGE true` (target: the
  sandbox within 1.3x of the plain container);
* exec `true` in a running sandbox vs `docker exec CONTAINER true` in a running plain container;
* kernel start (start_kernel() to the first execute_reply) on docker vs local vs a plain ipykernel.
Interleaved runs, medians and p90. Needs an engine and the default image (`openshell image build`).
Usage: .venv/bin/python bench/bench_docker.py [--cycles 10] [--execs 50] [--kernels 3]. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

STATE = Path(tempfile.mkdtemp(prefix="openshell-bench-docker-"))
os.environ["OPENSHELL_STATE_DIR"] = str(STATE)

from jupyter_openshell.proxy import ProxyClient  # noqa: E402  (after the state dir is chosen)
from jupyter_openshell.runtime import SandboxSpec, get_backend  # noqa: E402
from jupyter_openshell.runtime.docker._image import default_image  # noqa: E402

DOCKER = shutil.which("docker") or "docker"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def show(label: str, values: list[float]) -> float:
    median = statistics.median(values)
    print(f"  {label:44} median {median * 1000:8.1f} ms   p90 {pct(values, 0.9) * 1000:8.1f} ms")
    return median


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sandbox_cycle(backend, n: int) -> None:
    name = f"bench-{n}"
    backend.create(SandboxSpec(name=name))
    assert backend.exec(name, ["true"]).wait(30) == 0
    backend.destroy(name)


def kernel_start(kernel_name: str, cwd: str) -> float:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--execs", type=int, default=50)
    parser.add_argument("--kernels", type=int, default=3)
    args = parser.parse_args()
    image = default_image()
    backend = get_backend("docker")
    ProxyClient().ensure_running()
    try:
        sandbox_cycle(backend, -1)  # the runtime layer prepared, caches warm
        run(DOCKER, "run", "--rm", "--network", "none", image, "true")
        print(f"image {image}; engine at {os.environ.get('DOCKER_HOST') or 'the default socket'}")

        print("create + exec true + destroy")
        ours, plain = [], []
        for n in range(args.cycles):
            ours.append(timed(lambda n=n: sandbox_cycle(backend, n)))
            plain.append(timed(lambda: run(DOCKER, "run", "--rm", "--network", "none", image, "true")))
        a = show("docker backend sandbox", ours)
        b = show("docker run --rm IMAGE true", plain)
        print(f"  ratio {a / b:.2f}x (target <= 1.3x)")

        print("exec true in a running sandbox / container")
        backend.create(SandboxSpec(name="bench-exec"))
        cid = subprocess.run(
            [DOCKER, "run", "-d", "--network", "none", image, "sleep", "3600"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        try:
            ours = [timed(lambda: backend.exec("bench-exec", ["true"]).wait(30)) for _ in range(args.execs)]
            plain = [timed(lambda: run(DOCKER, "exec", cid, "true")) for _ in range(args.execs)]
        finally:
            backend.destroy("bench-exec")
            run(DOCKER, "rm", "-f", cid)
        a = show("sandbox exec (agent control socket)", ours)
        b = show("docker exec CONTAINER true", plain)
        print(f"  ratio {a / b:.2f}x")

        print("kernel start (start_kernel -> first execute_reply)")
        from ipykernel.kernelspec import install as install_plain

        from jupyter_openshell.kernel.kernelspec import install

        prefix = tempfile.mkdtemp(prefix="openshell-bench-ks-")
        install_plain(prefix=prefix, kernel_name="plain-python")
        install(prefix=prefix, name="openshell-local", pool_size=0, backend="local")
        install(prefix=prefix, name="openshell-docker", pool_size=0, backend="docker")
        os.environ["JUPYTER_PATH"] = str(Path(prefix) / "share" / "jupyter")
        cwd = tempfile.mkdtemp(prefix="openshell-bench-ws-")
        os.chmod(cwd, 0o755)
        kinds = {
            "plain ipykernel": "plain-python",
            "openshell local": "openshell-local",
            "openshell docker": "openshell-docker",
        }
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for spec in kinds.values():
            kernel_start(spec, cwd)  # warm
        for _ in range(args.kernels):
            for label, spec in kinds.items():
                times[label].append(kernel_start(spec, cwd))
        for label, values in times.items():
            show(label, values)
        shutil.rmtree(prefix, ignore_errors=True)
        shutil.rmtree(cwd, ignore_errors=True)
    finally:
        for info in backend.list():
            backend.destroy(info.name)
        ProxyClient().stop()
        shutil.rmtree(STATE, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
