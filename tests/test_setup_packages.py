"""scripts/setup.sh installs every Debian package the tests use: a static check.

Every external command the tests call (argv[0] of subprocess calls and of sandbox execs, what follows a
`--`, the commands of `sh -c` scripts, `shutil.which` lookups) must be named in setup.sh's
`command:package` lists, or come with every Debian system (Essential packages, shell builtins), or be
one of the few listed below with the reason it is not an apt package. Where dpkg is available, each
listed command that is installed here must really come from the package setup.sh names for it.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup.sh"
SCANNED = [ROOT / "tests", ROOT / "jupyter_openshell" / "testing"]

# Debian Essential packages (coreutils, dash, bash, grep, sed, findutils, dpkg, hostname, libc-bin) and
# POSIX shell builtins (kill, read, wait ...): on every Debian system, never installed by setup.sh.
ESSENTIAL = {
    "sh", "bash", "cat", "echo", "true", "false", "sleep", "touch", "kill", "pwd", "read", "exit", "wait",
    "nohup", "env", "id", "ls", "test", "printf", "mkdir", "rm", "cp", "mv", "chmod", "chown", "head",
    "tail", "wc", "sort", "timeout", "dd", "stat", "ln", "readlink", "tee", "yes", "seq", "cut", "tr",
    "grep", "sed", "xargs", "find", "uname", "date", "cd", "export", "set", "exec", "trap", "ulimit",
    "umask", "unset", "command", "type", "source", ":", "[", ".", "whoami", "hostname", "dpkg", "dpkg-query",
    "ldd", "truncate",
}
NOT_APT = {
    "python3": "the interpreter setup.sh builds the venv with (it needs it to run at all)",
    "nvidia-smi": "NVIDIA's driver, not Debian's; the tests that run it are marked gpu and skip without one",
    "chromium-browser": "Ubuntu's name for chromium, looked up as a fallback (setup.sh installs chromium)",
}
CALLS = {"run", "Popen", "call", "check_call", "check_output", "exec", "exec_in", "execvp", "execv",
         "create_subprocess_exec", "spawn"}
SHELLS = {"sh", "bash"}


def setup_packages(text: str) -> dict[str, str]:
    """{command: package} from setup.sh's `product_apt="..."` and `test_apt="..."` lines."""
    table = {}
    for line in re.findall(r'^(?:product|test)_apt="([^"]*)"', text, re.M):
        for pair in line.split():
            command, _, package = pair.partition(":")
            table[command] = package
    return table


def _strings(nodes: list[ast.expr]) -> list[str | None]:
    """String constants (an f-string: its constant parts joined; anything else: None)."""
    out: list[str | None] = []
    for node in nodes:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            out.append("".join(v.value for v in node.values if isinstance(v, ast.Constant)))
        else:
            out.append(None)
    return out


def shell_commands(script: str) -> set[str]:
    """The command words of a shell script (first word of each simple command)."""
    found = set()
    script = re.sub(r"[0-9]*[<>]+&?[0-9]+|[0-9]*[<>]+\s*\S+", " ", script)  # redirections: 2>&1, >/dev/null
    for part in re.split(r";|&&|\|\||\||&|\$\(|`|\n|\(|\)", script):
        try:
            words = shlex.split(part, comments=True)
        except ValueError:
            words = part.split()
        words = [w for w in words if not re.match(r"^\w+=", w)]
        while words and words[0] == "!":  # `! cmd`: the command is what follows
            words = words[1:]
        if words and words[0] not in ("if", "then", "else", "fi", "do", "done", "for", "while", "{", "}"):
            found.add(words[0])
    return found


def _argv_commands(argv: list[str | None]) -> set[str]:
    if not argv or argv[0] is None:
        return set()
    found = {argv[0]}
    if argv[0] in SHELLS and len(argv) > 2 and argv[1] == "-c" and argv[2] is not None:
        found |= shell_commands(argv[2])
    if argv[0] in ("setpriv", "timeout", "env", "nohup"):  # wrappers: the command they run counts too
        rest = [a for a in argv[1:] if a is None or not a.startswith("-")]
        rest = [a for a in rest if a is None or not a.isdigit()]
        found |= _argv_commands(rest)
    return found


def commands_called(paths: list[Path]) -> dict[str, set[str]]:
    """{command: files that call it} over every .py file below `paths`."""
    found: dict[str, set[str]] = {}

    def add(commands: set[str], path: Path) -> None:
        for command in commands:
            # (an option is no command: the rest of a `$(...)` split off, or an argv given to an image's
            # entrypoint; `no-such-command*` is what tests of a missing command run)
            if (command and "/" not in command and not command.startswith(("{", "-"))
                    and not command.startswith("no-such-command")):
                found.setdefault(command, set()).add(str(path.relative_to(ROOT)))

    for base in paths:
        for path in sorted(base.rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, (ast.List, ast.Tuple)):
                    items = _strings(list(node.elts))
                    if items and items[0] in SHELLS | {"setpriv"}:  # an argv held in a variable
                        add(_argv_commands(items), path)
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                if name == "which" and node.args:
                    add({s for s in _strings(node.args[:1]) if s}, path)
                if name in CALLS:
                    for arg in node.args[:2]:
                        if isinstance(arg, (ast.List, ast.Tuple)):
                            add(_argv_commands(_strings(list(arg.elts))), path)
                args = _strings(list(node.args))
                if "--" in args:  # cli("exec", NAME, "--", CMD, ...)
                    add(_argv_commands(args[args.index("--") + 1:]), path)
    return found


def unprovided(found: dict[str, set[str]], table: dict[str, str]) -> dict[str, set[str]]:
    return {c: files for c, files in found.items() if c not in table and c not in ESSENTIAL | set(NOT_APT)}


def test_setup_names_a_package_for_every_command_the_tests_call():
    table = setup_packages(SETUP.read_text())
    found = commands_called(SCANNED)
    # the scan sees what the tests are known to run (else it would pass by seeing nothing)
    assert {"setfacl", "curl", "setpriv", "chromium", "chromedriver", "bwrap", "sh"} <= set(found), found
    missing = unprovided(found, table)
    assert not missing, (
        "commands the tests call that scripts/setup.sh does not install (add `command:package` to its "
        f"test_apt list): {missing}"
    )
    # control: the check sees a package taken out of setup.sh
    assert set(unprovided(found, {c: p for c, p in table.items() if c != "setfacl"})) == {"setfacl"}


def test_shell_scripts_and_wrappers_are_looked_into():
    assert shell_commands("read line; echo got:$line; FOO=1 curl -s x >/dev/null && git log | wc -l") == {
        "read", "echo", "curl", "git", "wc"}
    wrapped = ["setpriv", "--reuid", "65534", "--clear-groups", "ip", "link"]
    assert _argv_commands(wrapped) >= {"setpriv", "ip"}
    assert shell_commands("nohup sleep 60 >/dev/null 2>&1 & echo ok; echo err >&2") == {"nohup", "echo"}


def _field(package: str, field: str) -> str:
    query = ["dpkg-query", "-W", "-f", f"${{{field}}}", package]
    return subprocess.run(query, capture_output=True, text=True).stdout


def _names(field_value: str) -> set[str]:
    """Package names of a Depends/Provides value ("gcc-12 (>= 12.2.0-1), cpp" -> {"gcc-12", "cpp"})."""
    alternatives = [alt.strip() for part in field_value.split(",") for alt in part.split("|")]
    return {alt.split(" ")[0].split(":")[0] for alt in alternatives if alt}


def _comes_from(package: str, owners: set[str]) -> bool:
    """The command's file belongs to `package`, to a package providing it (NodeSource's nodejs provides
    npm), or to one it depends on (gcc's cc is gcc-12's)."""
    if package in owners:
        return True
    if any(package in _names(_field(owner, "Provides")) for owner in owners):
        return True
    return bool(owners & _names(_field(package, "Depends")))


def test_each_listed_command_comes_from_the_package_named():
    if not shutil.which("dpkg"):
        pytest.skip("dpkg is not installed: not a Debian system, the package names cannot be checked")
    wrong = {}
    for command, package in setup_packages(SETUP.read_text()).items():
        where = shutil.which(command)
        if where is None:
            continue  # not installed here: setup.sh would install it
        candidates = [where, str(Path(where).resolve()), *(f"{d}/{command}" for d in ("/bin", "/usr/bin",
                      "/sbin", "/usr/sbin"))]
        owners = set()
        for path in candidates:
            done = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
            owners |= {line.split(":", 1)[0] for line in done.stdout.splitlines()}
        if owners and not _comes_from(package, owners):
            wrong[command] = (package, sorted(owners))
    assert not wrong, f"setup.sh names the wrong package (named, really): {wrong}"
