"""Kubernetes backend numbers.

Where a cluster is given (OPENSHELL_TEST_KUBECONFIG, namespace OPENSHELL_TEST_K8S_NAMESPACE with
`openshell k8s install` applied): sandbox create (pod Running, registered) to the first command's exit,
exec `true` in a running sandbox, and kernel start (start_kernel() to the first execute_reply).
Without one (these machines): the backend's rendered sandbox Pod started by `podman kube play` (runc,
--network none, the Localhost seccomp profile, the test-only channel transform of
tests/k8s/test_podman_pod.py) to the first `podman exec true`, beside `podman run --rm IMAGE true` of the
same image; and `podman exec true` in it beside `podman exec` in a plain container. Interleaved, medians
and p90. Needs podman, runc, the Docker Engine and the default image (`openshell image build`; it is
copied into podman's store). Usage: .venv/bin/python bench/bench_k8s.py [--cycles 8] [--execs 30]
[--kernels 3]. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

STATE = Path(tempfile.mkdtemp(prefix="openshell-bench-k8s-"))
os.environ["OPENSHELL_STATE_DIR"] = str(STATE)

import yaml  # noqa: E402

from jupyter_openshell.runtime._resources import Limits  # noqa: E402
from jupyter_openshell.runtime.docker import _profile  # noqa: E402
from jupyter_openshell.runtime.docker._image import default_image  # noqa: E402
from jupyter_openshell.runtime.kubernetes import _manifests  # noqa: E402
from jupyter_openshell.runtime.kubernetes._settings import LOCALHOST_PROFILE, KubeSettings  # noqa: E402

PODMAN = shutil.which("podman") or "podman"
CONF = STATE / "containers.conf"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def show(label: str, values: list[float]) -> float:
    median = statistics.median(values)
    print(f"  {label:52} median {median * 1000:8.1f} ms   p90 {pct(values, 0.9) * 1000:8.1f} ms")
    return median


def podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PODMAN, "--runtime", "runc", *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "CONTAINERS_CONF": str(CONF)},
    )


def podman_image() -> str:
    import docker

    image = default_image()
    wanted = docker.from_env().images.get(image).id.split(":")[-1]
    have = subprocess.run(
        [PODMAN, "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True
    ).stdout.strip()
    if have != wanted:
        subprocess.run([PODMAN, "pull", "-q", f"docker-daemon:{image}"], check=True, capture_output=True)
    return image


def rendered_pod(image: str, channel: Path) -> dict:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "k8s"))
    from test_podman_pod import podman_transform  # the same test-only transform as the test

    settings = KubeSettings(server_id="bench001", seccomp="Localhost", image=image)
    pod = _manifests.sandbox_objects(
        settings,
        name="bench",
        instance=uuid.uuid4().hex[:8],
        created=0.0,
        policy_text="",
        token="bench",
        limits=Limits(),
        gpu=False,
        proxy="127.0.0.1:3128",
        owner=None,
    )[2]
    return podman_transform(pod, channel)


def podman_bench(cycles: int, execs: int) -> None:
    image = podman_image()
    CONF.write_text('[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n')
    seccomp = STATE / "seccomp"
    seccomp.mkdir()
    (seccomp / LOCALHOST_PROFILE).write_text(json.dumps(_profile.profile()))
    channel = STATE / "chan"
    channel.mkdir(mode=0o755)
    STATE.chmod(0o755)
    play, plain = [], []
    for n in range(cycles):
        pod = rendered_pod(image, channel)
        manifest = STATE / f"pod-{n}.yaml"
        manifest.write_text(yaml.safe_dump(pod, sort_keys=False))
        name = f"{pod['metadata']['name']}-sandbox"
        t0 = time.perf_counter()
        podman("kube", "play", "--network", "none", "--seccomp-profile-root", str(seccomp), str(manifest))
        podman("exec", name, "true")
        play.append(time.perf_counter() - t0)
        if n == 0:
            exec_pod = []
            for _ in range(execs):
                t0 = time.perf_counter()
                podman("exec", name, "true")
                exec_pod.append(time.perf_counter() - t0)
        podman("kube", "down", str(manifest))
        t0 = time.perf_counter()
        podman("run", "--rm", "--network", "none", image, "true")
        plain.append(time.perf_counter() - t0)
    podman("run", "-d", "--name", "bench-plain", "--network", "none", image, "sleep", "600")
    try:
        exec_plain = []
        for _ in range(execs):
            t0 = time.perf_counter()
            podman("exec", "bench-plain", "true")
            exec_plain.append(time.perf_counter() - t0)
    finally:
        podman("rm", "-f", "-t", "0", "bench-plain")
    version = subprocess.run([PODMAN, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version}, runc, image {image}, {cycles} cycles, {execs} execs")
    a = show("kube play of the rendered Pod -> first exec true", play)
    b = show("podman run --rm IMAGE true (same image)", plain)
    print(f"  ratio {a / b:.2f}x")
    show("podman exec true (rendered Pod)", exec_pod)
    show("podman exec true (plain container)", exec_plain)


def cluster_bench(kubeconfig: str, cycles: int, execs: int, kernels: int) -> None:
    from jupyter_client.manager import start_new_kernel

    from jupyter_openshell.kernel.kernelspec import install
    from jupyter_openshell.runtime import SandboxSpec
    from jupyter_openshell.runtime.kubernetes import KubernetesBackend

    settings = KubeSettings(
        kubeconfig=kubeconfig,
        server_id="bench001",
        namespace=os.environ.get("OPENSHELL_TEST_K8S_NAMESPACE", "openshell-test"),
    )
    backend = KubernetesBackend(settings)
    first, execs_t = [], []
    for n in range(cycles):
        t0 = time.perf_counter()
        backend.create(SandboxSpec(name=f"bench-{n}"))
        backend.exec(f"bench-{n}", ["true"]).wait(60)
        first.append(time.perf_counter() - t0)
        if n == 0:
            for _ in range(execs):
                t0 = time.perf_counter()
                backend.exec("bench-0", ["true"]).wait(60)
                execs_t.append(time.perf_counter() - t0)
        backend.destroy(f"bench-{n}")
    show("create -> first command exited", first)
    show("exec true in a running sandbox", execs_t)
    os.environ["OPENSHELL_K8S_KUBECONFIG"] = kubeconfig
    os.environ["JUPYTER_PATH"] = str(STATE / "share" / "jupyter")
    install(prefix=str(STATE), name="openshell-k8s-bench", pool_size=0, backend="kubernetes")
    starts = []
    for _ in range(kernels):
        t0 = time.perf_counter()
        km, kc = start_new_kernel(kernel_name="openshell-k8s-bench", startup_timeout=300)
        kc.execute_interactive("1", timeout=120)
        starts.append(time.perf_counter() - t0)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    show("kernel start -> first execute_reply", starts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--execs", type=int, default=30)
    parser.add_argument("--kernels", type=int, default=3)
    args = parser.parse_args()
    try:
        kubeconfig = os.environ.get("OPENSHELL_TEST_KUBECONFIG")
        if kubeconfig:
            cluster_bench(kubeconfig, args.cycles, args.execs, args.kernels)
        else:
            print("no cluster (OPENSHELL_TEST_KUBECONFIG unset): the rendered Pod under podman instead")
            podman_bench(args.cycles, args.execs)
    finally:
        shutil.rmtree(STATE, ignore_errors=True)


if __name__ == "__main__":
    main()
