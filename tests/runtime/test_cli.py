"""`openshell sandbox ...` end to end, as root and as an unprivileged user (setpriv, own state dir):
create, ls (with the active resource enforcement), exec (streams, exit code), policy show/set, logs, rm;
what rm and gc say; the proxy `create` starts going with the last sandbox (unless kept); a failed create
leaving no proxy; flows, logs with denials and the host-side `allow`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from jupyter_openshell.proxy import ProxyClient

NOBODY = 65534


@pytest.fixture(params=["root", "user"])
def cli(request):
    if os.geteuid() != 0:
        pytest.skip("both paths are driven from root (setpriv for the unprivileged one)")
    base = Path(tempfile.mkdtemp(prefix=f"openshell-cli-{request.param}-"))
    base.chmod(0o755)
    state = base / "state"
    state.mkdir(mode=0o700)
    if request.param == "user":
        os.chown(base, NOBODY, NOBODY)
        os.chown(state, NOBODY, NOBODY)
    prefix = (
        ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
        if request.param == "user"
        else []
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(OPENSHELL_STATE_DIR=str(state), HOME=str(base))

    def run(
        *args: str, input: str | None = None, area: str = "sandbox", extra_env: dict | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*prefix, sys.executable, "-m", "jupyter_openshell", area, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, **(extra_env or {})},
            cwd="/",
        )

    run.mode = request.param
    run.base = base
    run.state = state
    run.prefix = prefix
    run.env = env
    yield run
    run("rm", "--all")
    ProxyClient(state).stop()
    shutil.rmtree(base, ignore_errors=True)


def test_cli_lifecycle(cli):
    created = cli("create", "--name", "cli-box")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "cli-box"

    listing = cli("ls").stdout
    row = next(line for line in listing.splitlines() if line.startswith("cli-box"))
    assert "running" in row and "127.77." in row
    assert ("cgroup v1" in row or "cgroup v2" in row) if cli.mode == "root" else "rlimits" in row
    # each resource says what enforces it; what rlimits cannot do is said, not implied
    # the private workspace is limited by default (1 GiB) and says how: an ext4 image (root), else a tmpfs
    if cli.mode == "root":
        assert "1G ext4-image" in row and "loop-mounted ext4 image of 1Gi" in listing
    else:
        assert "1G tmpfs" in row and "LOST WHEN THE SANDBOX STOPS" in listing
    assert "/tmp and /dev/shm are tmpfs of 536870912 bytes each" in listing
    if cli.mode == "root":
        assert "1.0 cgroup" in row and "2G cgroup" in row and "256 cgroup" in row
        assert "NOT-ENFORCED" not in listing
    else:
        assert "1.0 NOT-ENFORCED" in row and "2G RLIMIT_AS" in row and "256 RLIMIT_NPROC" in row
        assert "RLIMIT_CPU caps CPU time, not the rate" in listing
    as_json = json.loads(cli("ls", "--json").stdout)[0]["details"]["resources"]
    expected = ("cgroup v1 (cpu.cfs_quota_us)", "cgroup v2 (cpu.max)") if cli.mode == "root" else ("none",)
    assert as_json["cpu"]["by"] in expected
    mechanism = "ext4-image" if cli.mode == "root" else "tmpfs"
    assert as_json["disk"]["by"] == mechanism and as_json["disk"]["limit"] == 1 << 30
    assert as_json["disk"]["workspace"]["by"] == mechanism and as_json["disk"]["workspace"]["inodes"] == 65536

    done = cli("exec", "cli-box", "--", "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (done.returncode, done.stdout, done.stderr) == (5, "out\n", "err\n")
    assert cli("exec", "cli-box", "--", "cat", input="piped\n").stdout == "piped\n"

    assert "action: deny" in cli("policy", "cli-box").stdout
    new_policy = cli.base / "p.yaml"
    new_policy.write_text(
        "network:\n  egress:\n    - host: api.example.com\n      action: allow\n    - action: deny\n"
    )
    new_policy.chmod(0o644)
    applied = cli("policy", "cli-box", "--set", str(new_policy))
    assert applied.returncode == 0 and "applied" in applied.stdout, applied.stderr
    assert "api.example.com" in cli("policy", "cli-box").stdout
    bad = cli.base / "bad.yaml"
    bad.write_text("network:\n  egress: 3\n")
    bad.chmod(0o644)
    refused = cli("policy", "cli-box", "--set", str(bad))
    assert refused.returncode == 1 and "egress" in refused.stderr
    assert "api.example.com" in cli("policy", "cli-box").stdout  # the old policy stays in force

    history = cli("policy", "cli-box", "--history").stdout.splitlines()
    assert len(history) == 2 and history[-1].endswith("(current)"), history
    first = history[0].split()[2]
    assert "+    - host: api.example.com" in cli("policy", "cli-box", "--diff", first).stdout
    back = cli("policy", "cli-box", "--rollback", first)
    assert back.returncode == 0 and f"policy version {first} applied" in back.stdout, back.stderr
    assert "api.example.com" not in cli("policy", "cli-box").stdout
    unknown = cli("policy", "cli-box", "--rollback", "ffff")
    assert unknown.returncode == 1 and "--history` lists the versions" in unknown.stderr

    assert "ready" in cli("logs", "cli-box").stdout
    assert cli("rm", "cli-box").returncode == 0
    assert "cli-box" not in cli("ls").stdout
    missing = cli("exec", "cli-box", "--", "true")
    assert missing.returncode == 1 and "no sandbox named cli-box" in missing.stderr


def _proxy_pid(cli) -> int | None:
    client = ProxyClient(cli.state)
    return client.status()["pid"] if client.is_running() else None


def test_rm_gc_say_what_they_removed_and_the_proxy_create_started_goes_with_the_last_sandbox(cli):
    first = cli("create", "--name", "first")
    assert first.returncode == 0, first.stderr
    pid = _proxy_pid(cli)
    assert pid is not None
    # said once, on stderr: pid, address, log file, how it ends and how to stop it now
    assert f"started the policy proxy: pid {pid}, listening on 127.0.0.1:" in first.stderr, first.stderr
    assert f"log {cli.state}/run/proxy.log" in first.stderr and "`openshell proxy stop`" in first.stderr
    assert "stops with the last sandbox" in first.stderr
    second = cli("create", "--name", "second")
    assert "policy proxy" not in second.stderr and _proxy_pid(cli) == pid

    removed = cli("rm", "first")
    assert (removed.returncode, removed.stdout) == (0, "removed sandbox first\n"), removed.stderr
    assert "stopped the policy proxy" not in removed.stderr and _proxy_pid(cli) == pid  # one is left
    crashed = cli("create", "--name", "crashed")
    assert crashed.returncode == 0, crashed.stderr
    shim = next(i["details"]["pid"] for i in json.loads(cli("ls", "--json").stdout) if i["name"] == "crashed")
    os.killpg(shim, 9)  # its processes die under it (OOM killer, a reboot ...)
    collected = cli("gc")
    assert "removed sandbox crashed: its processes had exited" in collected.stdout, collected.stdout
    assert "second" not in collected.stdout  # running, no owner: never collected
    assert "nothing to clean: 1 sandbox(es)" in cli("gc").stdout

    last = cli("rm", "second")
    assert last.stdout == "removed sandbox second\n", last.stderr
    assert f"stopped the policy proxy (pid {pid})" in last.stderr and "none is left" in last.stderr
    assert _proxy_pid(cli) is None
    nothing = cli("rm")
    assert nothing.returncode == 2 and "name the sandboxes to remove, or --all" in nothing.stderr


@pytest.mark.parametrize("how", ["env", "proxy start"])
def test_a_kept_proxy_outlives_the_last_sandbox(cli, how):
    """Control of the test above: the same create + rm, with the proxy kept, leave it running."""
    keep = {"OPENSHELL_KEEP_PROXY": "1"} if how == "env" else {}
    if how == "proxy start":
        started = cli("start", area="proxy")
        assert started.returncode == 0 and "started in the background: pid" in started.stdout, started.stderr
    pid = None
    created = cli("create", "--name", "kept", extra_env=keep)
    assert created.returncode == 0, created.stderr
    pid = _proxy_pid(cli)
    if how == "env":
        assert "`openshell proxy stop` stops it" in created.stderr and "last sandbox" not in created.stderr
    removed = cli("rm", "kept", extra_env=keep)
    assert "stopped the policy proxy" not in removed.stderr
    assert _proxy_pid(cli) == pid is not None
    status = cli("status", area="proxy").stdout
    assert "kept until `openshell proxy stop`" in status
    assert cli("stop", area="proxy").returncode == 0 and _proxy_pid(cli) is None


def test_proxy_start_keeps_the_proxy_a_sandbox_started(cli):
    assert cli("create", "--name", "adopted").returncode == 0
    pid = _proxy_pid(cli)
    assert "stops with the last one" in cli("status", area="proxy").stdout
    adopted = cli("start", area="proxy")
    assert f"already running (pid {pid}" in adopted.stdout and "now kept" in adopted.stdout
    cli("rm", "adopted")
    assert _proxy_pid(cli) == pid


FAILING_CREATE = """
from jupyter_openshell.runtime import Bind, SandboxError, SandboxSpec, get_backend
try:
    get_backend().create(SandboxSpec(name="broken", binds=[Bind("/nonexistent-openshell-src", "/data")]))
except SandboxError as exc:
    print("create failed:", str(exc).splitlines()[0])
"""


@pytest.mark.parametrize("keep", [False, True], ids=["default", "control-kept"])
def test_a_failed_create_leaves_no_proxy_behind(cli, keep):
    """The first create of a state directory starts the proxy (it makes the CA), then bwrap fails on a
    bind source that does not exist: the proxy goes with the half-made sandbox. Control: kept, the
    same failure leaves it running (so the create did start it)."""
    env = {**cli.env, **({"OPENSHELL_KEEP_PROXY": "1"} if keep else {})}
    done = subprocess.run([*cli.prefix, sys.executable, "-c", FAILING_CREATE], capture_output=True,
                          text=True, timeout=60, env=env, cwd="/")
    assert "create failed: sandbox broken did not start" in done.stdout, done.stdout + done.stderr
    assert (_proxy_pid(cli) is not None) is keep
    assert "broken" not in cli("ls").stdout


def test_flows_logs_and_host_side_allow(cli, tmp_path):
    """`sandbox flows` lists each decision, `--denied` only denials, `--json` records, `--follow` new
    ones as they come; `sandbox logs` shows the denials after the runtime log, one line per request with
    a count and the host-side command; that command (`sandbox allow`) lets the request through."""
    from jupyter_openshell.testing import UpstreamServer

    with UpstreamServer(host="127.0.0.2") as up:
        policy = cli.base / "flows.yaml"
        policy.write_text(
            f"network:\n  egress:\n    - host: 127.0.0.2\n      ports: [{up.port}]\n      paths:\n"
            "        - path: /ok\n          methods: [GET]\n      action: allow\n    - action: deny\n"
        )
        policy.chmod(0o644)
        assert cli("create", "--name", "watched", "--policy", str(policy)).returncode == 0
        curl = "curl -s -o /dev/null -w '%{http_code} ' "
        base = f"http://127.0.0.2:{up.port}"
        out = cli("exec", "watched", "--", "sh", "-c", f"{curl}{base}/ok; {curl}{base}/no; {curl}{base}/no")
        assert out.stdout.split() == ["200", "403", "403"], out.stderr

        listed = cli("flows", "watched").stdout.splitlines()
        assert listed[0].split() == ["TIME", "DECISION", "STATUS", "METHOD", "HOST", "PATH", "RULE"]
        rows = [line.split() for line in listed[1:]]
        assert [(r[1], r[2], r[3], r[5]) for r in rows] == [
            ("allow", "200", "GET", "/ok"), ("deny", "403", "GET", "/no"), ("deny", "403", "GET", "/no")]
        assert rows[0][4] == f"127.0.0.2:{up.port}" and "network.egress[0]" in listed[1]
        assert [line.split()[5] for line in cli("flows", "watched", "--denied").stdout.splitlines()[1:]] \
            == ["/no", "/no"]
        records = [json.loads(line) for line in cli("flows", "watched", "--json").stdout.splitlines()]
        assert [r["path"] for r in records] == ["/ok", "/no", "/no"] and records[1]["decision"] == "deny"

        logs = cli("logs", "watched").stdout
        runtime_log, _, denials = logs.partition("--- denials of sandbox watched")
        assert "ready" in runtime_log and "/no" not in runtime_log
        assert f"GET {base}/no  denied 2 times" in denials and "/ok" not in denials
        command = f"openshell sandbox allow watched GET {base}/no"
        assert f"to allow it: {command}" in denials

        follow = subprocess.Popen(
            [*cli.prefix, sys.executable, "-m", "jupyter_openshell", "sandbox", "flows", "watched",
             "--follow", "--denied"],
            stdout=subprocess.PIPE, text=True, env=cli.env, cwd="/",
        )
        try:
            assert follow.stdout.readline().startswith("TIME")
            for _ in range(2):
                assert "/no" in follow.stdout.readline()
            cli("exec", "watched", "--", "sh", "-c", f"{curl}{base}/later; {curl}{base}/ok")
            assert "/later" in follow.stdout.readline()  # the new denial; the allowed /ok is filtered
        finally:
            follow.send_signal(signal.SIGINT)
            assert follow.wait(10) == 0

        allowed = cli(*command.split()[2:])
        assert allowed.returncode == 0 and "allowed GET" in allowed.stdout and "+" in allowed.stdout
        assert cli("exec", "watched", "--", "sh", "-c", f"{curl}{base}/no").stdout.split() == ["200"]
        assert cli("exec", "watched", "--", "sh", "-c", f"{curl}{base}/other").stdout.split() == ["403"]
        unknown = cli("allow", "nosuch", "GET", f"{base}/no")
        assert unknown.returncode == 1 and "no sandbox named nosuch" in unknown.stderr


IMPORTS_OF = """
import sys
from jupyter_openshell.cli import main
code = main(sys.argv[1:])
heavy = ["jupyter_openshell.policy._parse", "jupyter_openshell.proxy._secrets",
         "jupyter_openshell.proxy._scrub", "jupyter_openshell.runtime._local",
         "jupyter_openshell.runtime._types", "jupyter_openshell.kernel", "ruamel.yaml", "yaml", "mitmproxy",
         "jupyter_server", "http.client", "ssl", "dataclasses", "typing"]
print(code, " ".join(m for m in heavy if m in sys.modules))
"""
# what each command may load of that list: exec nothing; rm and create (without --policy: the default
# policy needs no parser) the backend
MAY_LOAD = {
    "exec": set(),
    "rm": {"jupyter_openshell.runtime._types", "jupyter_openshell.runtime._local", "dataclasses", "typing"},
    "create": {"jupyter_openshell.runtime._types", "jupyter_openshell.runtime._local", "dataclasses",
               "typing"},
}


def test_cli_commands_load_only_what_they_use(cli):
    """Agents call `openshell sandbox exec/create/rm` in loops (bench/bench_cli.py times them): exec
    imports only the runtime's exec path; none of them loads the proxy's secret scrubber, http.client
    or ssl. Help still lists every area and action."""
    assert cli("create", "--name", "light").returncode == 0

    def loaded(*argv: str) -> set[str]:
        done = subprocess.run([*cli.prefix, sys.executable, "-c", IMPORTS_OF, "sandbox", *argv],
                              capture_output=True, text=True, timeout=60, env=cli.env, cwd="/")
        code, *modules = done.stdout.splitlines()[-1].split()
        assert code == "0", done.stdout + done.stderr
        return set(modules)

    assert loaded("exec", "light", "--", "true") <= MAY_LOAD["exec"]
    assert loaded("create", "--name", "light2") <= MAY_LOAD["create"]
    assert loaded("rm", "light2") <= MAY_LOAD["rm"]
    top = subprocess.run([sys.executable, "-m", "jupyter_openshell", "--help"], capture_output=True,
                         text=True)
    assert all(area in top.stdout for area in ("policy", "proxy", "sandbox", "secret", "demo"))
    actions = cli("--help").stdout
    assert all(a in actions for a in ("create", "exec", "logs", "flows", "allow", "rm", "gc"))


def test_pip_in_a_sandbox_gives_up_at_the_first_denial(cli):
    """PIP_RETRIES=0 in every sandbox: a denied index is asked once, not six times (one notice, fast).
    Control: the same pip told to retry twice asks three times."""
    assert cli("create", "--name", "pipper").returncode == 0

    def denied_asks(*env: str) -> int:
        done = cli("exec", *env, "pipper", "--", "python3", "-m", "pip", "download", "--no-deps",
                   "--disable-pip-version-check", "-d",
                   "/tmp/dl", "openshell-no-such-package")
        assert done.returncode != 0 and "openshell-no-such-package" in done.stdout + done.stderr
        listed = cli("flows", "pipper", "--json", "--limit", "500").stdout
        records = [json.loads(line) for line in listed.splitlines()]
        return sum(1 for r in records if r["host"] == "pypi.org" and r["decision"] == "deny")

    assert denied_asks() == 1
    assert denied_asks("--env", "PIP_RETRIES=2") == 1 + 3  # (the flows of both runs)
