"""Escape attempts from inside a sandbox, as root and as an unprivileged user: network bypasses, host
files and processes, blocked system calls, foreign architectures, capabilities, links.

One probe program (`inside_probe.py`) runs every attempt in one sandbox per mode and reports what
happened; each test below asserts one refusal. Every assertion names the exact failure a weaker
sandbox would not produce (it would connect, resolve, succeed with 0, or see the path).
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import uuid

import pytest

from jupyter_openshell.testing import UpstreamServer

from .conftest import HERE

_PROBES: dict[str, dict] = {}
SYSCALLS_EPERM = [
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "open_by_handle_at",
    "io_uring_setup",
    "fsopen",
    "open_tree",
    "move_mount",
    "fsmount",
    "fspick",
    "mount_setattr",
    "pidfd_getfd",
]


class UdpSink:
    """A UDP listener on host loopback that records anything the sandbox manages to send."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind(("127.0.0.1", 53))
        except OSError:
            self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.received: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                self.received.append(self.sock.recv(4096))
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


@pytest.fixture
def probe(mode, modes):
    if mode.label in _PROBES:
        return _PROBES[mode.label]
    with UpstreamServer() as service:
        sink = UdpSink()
        try:
            name = mode.create()
            other = modes("root" if mode.name == "user" else "user")
            record = mode.record(name)
            facts = {
                "host_port": service.port,
                "proxy_port": int(mode.proxy()["listen"].rsplit(":", 1)[1]),
                "proxy_pid": mode.proxy()["pid"],
                "dns_port": sink.port,
                "exfil_name": f"secret-{uuid.uuid4().hex}.exfil.example.com",
                "absent_paths": [
                    str(mode.state),
                    str(mode.state / "ca" / "mitmproxy-ca.pem"),
                    str(mode.state / "secrets"),
                    str(mode.state / "policies"),
                    str(other.state),
                    str(mode.root),
                    *([record["exposed"]] if "exposed" in record else []),
                    "/root",
                    "/home",
                    *(["/var"] if mode.backend == "local" else []),  # (a container's /var is its image's)
                    "/run/dbus",
                    "/run/user",
                    "/var/run/docker.sock",
                    "/run/docker.sock",
                    "/run/containerd",
                    "/tmp/.X11-unix",
                    "/etc/shadow",
                    "/etc/ssh",
                    "/etc/sudoers",
                    "/etc/pip.conf",
                    "/sys/fs/cgroup",
                    "/work/main/.git",
                    "/work/main/tests",
                    "/dev/sda",
                    "/dev/mem",
                    "/dev/kmsg",
                ],
            }
            proc = mode.python(name, (HERE / "inside_probe.py").read_text(), json.dumps(facts), timeout=120)
            assert proc.returncode == 0, proc.stderr
            result = json.loads(proc.stdout)
            result["_host"] = {"service_requests": len(service.requests), "dns_packets": len(sink.received)}
            mode.rm(name)
        finally:
            sink.close()
    _PROBES[mode.label] = result
    return result


def test_probe_ran_every_step(probe):
    assert probe.get("errors") is None, probe.get("errors")


@pytest.mark.parametrize(
    "target", ["tcp_external", "tcp_private", "udp_external", "tcp6_external", "metadata"]
)
def test_direct_connections_fail_fast(probe, target):
    outcome = probe["net"][target]
    assert outcome["errno"] == errno.ENETUNREACH, outcome
    assert outcome["seconds"] < 1.0


def test_host_loopback_services_and_proxy_listener_unreachable(probe):
    for target in ("host_service", "host_service6", "proxy_listener"):
        assert probe["net"][target]["errno"] == errno.ECONNREFUSED, (target, probe["net"][target])
    assert probe["_host"]["service_requests"] == 0


def test_dns_fails_at_once_and_nothing_reaches_a_resolver(probe):
    assert probe["dns"]["resolved"] is False
    assert probe["dns"]["seconds"] < 1.0
    assert probe["_host"]["dns_packets"] == 0


def test_only_loopback_interface(probe):
    assert probe["interfaces"] == ["lo"]


def test_icmp_and_raw_sockets_refused(probe):
    assert probe["net"]["icmp_dgram"] in (errno.EACCES, errno.EPERM)
    for label in ("AF_INET_RAW", "AF_INET6_RAW", "AF_INET_PACKET"):
        assert probe["sockets"][label] == errno.EPERM, label


@pytest.mark.parametrize("family", ["AF_PACKET", "AF_NETLINK", "AF_NETLINK_ROUTE_RAW", "AF_ALG", "AF_VSOCK"])
def test_other_socket_families_refused(probe, family):
    assert probe["sockets"][family] == errno.EAFNOSUPPORT


@pytest.mark.parametrize("name", SYSCALLS_EPERM)
def test_blocked_syscall(probe, name):
    assert probe["syscalls"][name] == errno.EPERM


def test_clone3_reports_enosys(probe):
    assert probe["syscalls"]["clone3"] == errno.ENOSYS


@pytest.mark.parametrize("flag", ["CLONE_NEWUSER", "CLONE_NEWNET", "CLONE_NEWNS"])
def test_clone_with_namespace_flags_refused(probe, flag):
    assert probe["clone"][flag] == errno.EPERM


def test_tiocsti_refused_even_with_high_bits(probe):
    assert probe["TIOCSTI"] == errno.EPERM
    assert probe["TIOCSTI_high_bits"] == errno.EPERM


@pytest.mark.parametrize("abi", ["x32", "i386"])
def test_foreign_architecture_calls_kill_the_process(probe, abi):
    assert probe["arch"][abi] == -31  # SIGSYS


def test_no_capabilities_no_new_privs_unprivileged_uid(probe):
    status = probe["status"]
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    assert probe["uid"] != 0


def test_host_paths_are_absent(probe):
    visible = [path for path, exists in probe["exists"].items() if exists]
    assert visible == []


def test_ca_bundle_present_without_private_key(probe):
    assert probe["ca_present"] is True
    assert probe["ca_has_private_key"] is False


def test_landlock_second_layer_refuses_proc_writes(probe):
    assert probe["proc_write"] == errno.EACCES


def test_dev_is_read_only_but_its_devices_and_shm_are_writable(probe, mode):
    # an unsized tmpfs: files written there would escape resources.disk (and RLIMIT_AS)
    # (docker: the engine's /dev is a root-owned 0755 tmpfs of 64 MiB: not writable by the sandbox's uid)
    dev = errno.EROFS if mode.backend == "local" else errno.EACCES
    assert probe["dev_write"] == {"dev": dev, "dev_shm": 0, "dev_null": 0}


def test_links_do_not_escape_the_workspace(probe):
    assert probe["hardlink_system"] in (errno.EXDEV, errno.EPERM)
    assert probe["hardlink_python"] in (errno.EXDEV, errno.EPERM)
    assert probe["symlink_shadow"] == errno.ENOENT


def test_host_processes_invisible_and_unkillable(probe):
    assert probe["proxy_pid_visible"] is False
    assert probe["kill_proxy"] == errno.ESRCH
    assert len(probe["pids"]) <= 4  # reaper, agent, the probe (and its child at most)
