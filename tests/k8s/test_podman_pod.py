"""The rendered sandbox Pod run for real: `podman kube play` (Debian's podman, runc as the OCI runtime,
`--network none`), with the project's Localhost seccomp profile (generated from the same rule list as the
local and Docker backends), and the in-sandbox attack probes of tests/security/inside_probe.py run inside.

The Pod is the backend's own (`_manifests.sandbox_objects`), changed by `podman_transform` ONLY where
podman 4.3 cannot run the real manifest, each named there: the channel volume (a projected Secret +
ConfigMap in the cluster) becomes a hostPath holding the credential, the CA bundle and a local proxy's
gateway socket (hostPath is forbidden in the real manifest: the invariants refuse it); the credential's
secretKeyRef and its $(VAR) expansion are done as the kubelet does them (podman reads neither); and the
seccomp field is also written as the annotation podman reads. What podman does not do, and the tests
therefore do not claim: emptyDir `medium: Memory`/`sizeLimit` (podman makes a disk volume),
activeDeadlineSeconds, NetworkPolicies, the pod's DNS config.

Shown inside the pod: no network but loopback (external, private, IPv6 and metadata addresses
unreachable at once, host loopback services refused, DNS fails fast), the blocked system calls, socket
families and foreign architectures of the project's filter, no capabilities, no_new_privs, a non-root
uid, a read-only root filesystem with the workspace and /tmp writable, the CA bundle without a key, no
host path, no host process; and the way out through the mounted channel: a request the policy allows
reaches the upstream, one it does not is refused (control: both are sent, only one arrives).
"""

from __future__ import annotations

import copy
import errno
import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from jupyter_openshell.runtime._resources import Limits
from jupyter_openshell.runtime.docker import _profile
from jupyter_openshell.runtime.kubernetes import _invariants, _manifests
from jupyter_openshell.runtime.kubernetes._settings import LOCALHOST_PROFILE, SANDBOX_UID, KubeSettings
from jupyter_openshell.testing import UpstreamServer, start_proxy

PROBE = Path(__file__).resolve().parents[1] / "security" / "inside_probe.py"
PODMAN = shutil.which("podman")
TOKEN = "podman-" + uuid.uuid4().hex
POLICY = """\
network:
  egress:
    - host: api.example.com
      ports: [{port}]
      addresses: ["127.0.0.1"]
      paths:
        - path: "/ok/**"
      action: allow
"""
# In the pod, a test-only relay from the loopback port clients use to the mounted channel socket (what the
# local backend's agent does; a cluster pod reaches the proxy's Service instead).
RELAY = """
import os, socket, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 3128)); srv.listen(16)
def pump(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    b.close()
while True:
    c, _ = srv.accept()
    u = socket.socket(socket.AF_UNIX); u.connect("/etc/openshell/proxy.sock")
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
"""

pytestmark = [
    pytest.mark.skipif(
        PODMAN is None, reason="podman is not installed (scripts/setup.sh --test installs it)"
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="podman kube play with runc needs root here"),
]


def podman_transform(pod: dict, channel: Path) -> dict:
    """The real Pod, changed only where podman 4.3 cannot run it (see the module docstring)."""
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    for vol in spec["volumes"]:
        if vol["name"] == "channel":  # 1. the channel: projected Secret + ConfigMap -> hostPath (test only)
            vol.pop("projected")
            vol["hostPath"] = {"path": str(channel), "type": "Directory"}
    env = spec["containers"][0]["env"]
    values: dict[str, str] = {}
    for item in env:  # 2. what the kubelet does: the Secret's value, then $(VAR) references
        if "valueFrom" in item:
            item.pop("valueFrom")
            item["value"] = TOKEN
        item["value"] = re.sub(r"\$\((\w+)\)", lambda m: values.get(m.group(1), m.group(0)), item["value"])
        values[item["name"]] = item["value"]
    profile = spec["securityContext"]["seccompProfile"]  # 3. podman reads the annotation, not the field
    assert profile == {"type": "Localhost", "localhostProfile": LOCALHOST_PROFILE}
    pod["metadata"]["annotations"] = {
        "seccomp.security.alpha.kubernetes.io/pod": f"localhost/{LOCALHOST_PROFILE}"
    }
    return pod


def _podman(*args: str, conf: Path | None = None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"CONTAINERS_CONF": str(conf)} if conf else {})}
    return subprocess.run(
        [PODMAN, "--runtime", "runc", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd="/",
        **kw,
    )


@pytest.fixture(scope="session")
def podman_image(tmp_path_factory) -> str:
    """The default sandbox image (built once per run by the Docker backend's builder), in podman's store."""
    from jupyter_openshell.testing.docker_engine import default_image, engine

    why = engine(tmp_path_factory.mktemp("dockerd-k8s"))
    if why is not None:
        pytest.skip(f"the sandbox image comes from the Docker backend's builder, and no engine runs: {why}")
    image = default_image()
    import docker

    wanted = docker.from_env().images.get(image).id.split(":")[-1]
    have = _podman("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
    if have != wanted:  # (not there, or an earlier build's)
        pulled = subprocess.run(
            [PODMAN, "pull", "-q", f"docker-daemon:{image}"], capture_output=True, text=True, timeout=600
        )
        assert pulled.returncode == 0, pulled.stderr
    return image


@pytest.fixture(scope="module")
def pod(podman_image, tmp_path_factory):
    """(run, container name, proxy, upstream): the rendered Pod running under podman."""
    base = tmp_path_factory.mktemp("podman-pod")
    base.chmod(0o755)
    channel = base / "chan"
    channel.mkdir(mode=0o755)
    seccomp_root = base / "seccomp"
    seccomp_root.mkdir()
    (seccomp_root / LOCALHOST_PROFILE).write_text(json.dumps(_profile.profile()))
    conf = base / "containers.conf"  # this machine's hard rlimits are below podman's defaults (runc fails)
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n')
    with UpstreamServer() as upstream:
        state = base / "proxy-state"
        state.mkdir(mode=0o700)
        (state / "default.yaml").write_text("network:\n  egress:\n    - action: deny\n")
        (state / "pod.yaml").write_text(POLICY.format(port=upstream.port))
        proxy = start_proxy(state, state / "default.yaml", resolve={"api.example.com": "127.0.0.1"})
        try:
            proxy.client.register_sandbox(
                "kpod", socket_path=channel / "proxy.sock", policy_file=state / "pod.yaml", created=1.0
            )
            (channel / "token").write_text(TOKEN)
            shutil.copy(proxy.ca_bundle, channel / "ca-bundle.pem")
            for f in ("token", "ca-bundle.pem"):
                (channel / f).chmod(0o644)
            settings = KubeSettings(server_id="podman01", seccomp="Localhost", image=podman_image)
            objects = _manifests.sandbox_objects(
                settings,
                name="probe",
                instance=uuid.uuid4().hex[:8],
                created=1.0,
                policy_text="",
                token=TOKEN,
                limits=Limits(cpu=1.0, memory=1 << 30, pids=256, disk=64 << 20, timeout=600),
                gpu=False,
                proxy="127.0.0.1:3128",
                owner=None,
            )
            assert _invariants.check([*objects, _manifests.sandbox_network_policy(settings)]) == []
            real = objects[2]
            manifest = base / "pod.yaml"
            manifest.write_text(yaml.safe_dump(podman_transform(real, channel), sort_keys=False))
            played = _podman(
                "kube",
                "play",
                "--network",
                "none",
                "--seccomp-profile-root",
                str(seccomp_root),
                str(manifest),
                conf=conf,
            )
            assert played.returncode == 0, played.stderr
            name = f"{real['metadata']['name']}-sandbox"
            try:
                yield _podman, name, proxy, upstream
            finally:
                _podman("kube", "down", str(manifest))
        finally:
            proxy.stop()


@pytest.fixture(scope="module")
def probe(pod):
    run, name, proxy, _ = pod
    facts = {
        "host_port": proxy.port + 1,
        "proxy_port": proxy.port,
        "proxy_pid": proxy.proc.pid,
        "dns_port": 53,
        "exfil_name": f"secret-{uuid.uuid4().hex}.exfil.example.com",
        "absent_paths": [
            str(proxy.state_dir),
            "/var/run/docker.sock",
            "/run/docker.sock",
            "/run/containerd",
            "/var/run/secrets/kubernetes.io",
            "/etc/shadow",
            "/root",
            "/home",
            "/work",
        ],
    }
    out = run("exec", "-i", name, "python3", "-", json.dumps(facts), input=PROBE.read_text())
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result.get("errors") is None, result["errors"]
    return result


def test_pod_is_the_rendered_one_running_as_its_non_root_uid(pod, probe):
    assert probe["uid"] == SANDBOX_UID
    status = probe["status"]
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"


def test_no_network_but_loopback(probe):
    for target in ("tcp_external", "tcp_private", "udp_external", "tcp6_external", "metadata"):
        assert probe["net"][target]["errno"] == errno.ENETUNREACH, (target, probe["net"][target])
        assert probe["net"][target]["seconds"] < 1.0
    for target in ("host_service", "host_service6", "proxy_listener"):
        assert probe["net"][target]["errno"] == errno.ECONNREFUSED, (target, probe["net"][target])
    assert probe["interfaces"] == ["lo"]
    assert probe["dns"]["resolved"] is False and probe["dns"]["seconds"] < 1.0


def test_project_seccomp_filter_applies(probe):
    blocked = {k: v for k, v in probe["syscalls"].items() if k != "clone3"}
    assert len(blocked) >= 28 and blocked == dict.fromkeys(blocked, errno.EPERM)
    assert probe["syscalls"]["clone3"] == errno.ENOSYS
    assert set(probe["clone"].values()) == {errno.EPERM}
    assert probe["TIOCSTI"] == probe["TIOCSTI_high_bits"] == errno.EPERM
    for family in ("AF_PACKET", "AF_NETLINK", "AF_NETLINK_ROUTE_RAW", "AF_ALG", "AF_VSOCK"):
        assert probe["sockets"][family] == errno.EAFNOSUPPORT, family
    for family in ("AF_INET_RAW", "AF_INET6_RAW", "AF_INET_PACKET"):
        assert probe["sockets"][family] == errno.EPERM, family
    assert probe["net"]["icmp_dgram"] in (errno.EACCES, errno.EPERM)
    assert probe["arch"] == {"x32": -31, "i386": -31}  # SIGSYS


def test_host_is_invisible(probe):
    assert [p for p, exists in probe["exists"].items() if exists] == []
    assert probe["proxy_pid_visible"] is False and probe["kill_proxy"] == errno.ESRCH
    assert probe["ca_present"] is True and probe["ca_has_private_key"] is False
    assert probe["symlink_shadow"] == errno.ENOENT


def test_root_filesystem_is_read_only_workspace_and_tmp_are_writable(pod):
    run, name, _, _ = pod
    check = (
        "import os\n"
        "for path in ('/usr/x', '/etc/x', '/x', '/etc/openshell/x', '/workspace/x', '/tmp/x'):\n"
        "    try:\n        open(path, 'w').close(); print(path, 0)\n"
        "    except OSError as e:\n        print(path, e.errno)\n"
    )
    out = run("exec", "-i", name, "python3", "-", input=check)
    got = dict(line.split() for line in out.stdout.splitlines())
    assert got == {
        "/usr/x": str(errno.EROFS),
        "/etc/x": str(errno.EROFS),
        "/x": str(errno.EROFS),
        "/etc/openshell/x": str(errno.EROFS),
        "/workspace/x": "0",
        "/tmp/x": "0",
    }, out


def test_the_way_out_is_the_mounted_channel_and_its_policy(pod):
    run, name, proxy, upstream = pod
    upstream.clear()
    assert run("exec", "-d", name, "python3", "-c", RELAY).returncode == 0
    codes = {}
    for path in ("/ok/1", "/denied/1"):
        out = run(
            "exec",
            name,
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--retry",
            "5",
            "--retry-connrefused",
            "--retry-delay",
            "1",
            "-x",
            "http://127.0.0.1:3128",
            f"http://api.example.com:{upstream.port}{path}",
        )
        codes[path] = out.stdout
    assert codes == {"/ok/1": "200", "/denied/1": "403"}, codes
    assert [r.path for r in upstream.requests] == ["/ok/1"]
    recs = [r for r in proxy.client.flows(created="any") if r["path"] in ("/ok/1", "/denied/1")]
    assert {r["sandbox"] for r in recs} == {"kpod"}
    # and nothing else leaves: the same request without the channel fails at once
    direct = run(
        "exec",
        name,
        "curl",
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        "5",
        f"http://127.0.0.1:{upstream.port}/ok/2",
    )
    assert direct.returncode != 0 and len(upstream.requests) == 1
