"""How the project starts host-side processes: never from a place a sandbox or another user can write.

Every host-side process the package starts (the proxy and its workers, JupyterLab for `openshell demo`,
test helpers) is built here:
* the interpreter is this process's own, by absolute path, in isolated mode (`-I`: no PYTHON* variables,
  no user site-packages, neither the working directory nor a script's directory on `sys.path`), so a
  `jupyter_openshell/` or `ipykernel_launcher.py` written into a workspace is never imported;
* the working directory is `/`, never the caller's (a workspace or notebook directory);
* the environment is the caller's minus every variable that changes what a program loads or runs
  (PYTHON*, LD_*, loader and interpreter start-up hooks, TLS key logs), with PATH reduced to absolute
  directories that exist and that no one but root or this user can write.
`safe_path()` is also what kernels of other kernelspecs get from the server extension.
It must never hand a child the caller's working directory, an unvetted PATH or a loader variable.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

# Exact names, besides the PYTHON* and LD_* families, that make a program load or run something else.
_DROP = frozenset({
    "BASH_ENV", "ENV", "CDPATH", "GLOBIGNORE", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND",
    "IFS", "GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF", "MALLOC_CONF",
    "PERL5LIB", "PERLLIB", "PERL5OPT", "RUBYLIB", "RUBYOPT", "NODE_OPTIONS", "NODE_PATH",
    "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "GIT_EXEC_PATH", "GIT_CONFIG_PARAMETERS", "GIT_SSH_COMMAND",
    "OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES", "SSLKEYLOGFILE", "MITMPROXY_SSLKEYLOGFILE",
    "IPYTHONDIR", "JUPYTER_PATH", "JUPYTER_CONFIG_DIR", "JUPYTER_CONFIG_PATH", "JUPYTER_DATA_DIR",
})
_DROP_PREFIXES = ("PYTHON", "LD_", "DYLD_", "GLIBC_TUNABLES", "MALLOC_")
# For Pythons we do not start ourselves (kernels of other kernelspecs): keep the working directory (the
# notebook's, which a sandbox may write) off sys.path while the interpreter starts.
SAFE_PYTHON = {"PYTHONSAFEPATH": "1"}
# PATH of the children we start ourselves: they run nothing by name but system tools.
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def python_argv(module: str, *args: str) -> list[str]:
    """`python -I -m module args...` with this process's interpreter (absolute, isolated mode)."""
    return [os.path.abspath(sys.executable), "-I", "-m", module, *args]


def _trusted_dir(path: str, uid: int) -> bool:
    """An absolute, existing directory that only root or `uid` can change (nor any directory above it)."""
    if not os.path.isabs(path):
        return False
    current = path
    while True:
        try:
            st = os.stat(current)
        except OSError:
            return False
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, uid):
            return False
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            return False
        parent = os.path.dirname(current)
        if parent == current:
            return True
        current = parent


def safe_path(path: str | None = None) -> str:
    """PATH without relative, missing or foreign-writable entries (order kept, duplicates dropped)."""
    uid = os.geteuid()
    seen: list[str] = []
    for entry in (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep):
        if entry and entry not in seen and _trusted_dir(entry, uid):
            seen.append(entry)
    return os.pathsep.join(seen) or "/usr/bin:/bin"


def safe_env(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment (or `base`) for a host child: loader variables dropped, PATH vetted,
    then `extra` added (the caller's own settings, trusted)."""
    env = {
        k: v for k, v in (os.environ if base is None else base).items()
        if k not in _DROP and not k.startswith(_DROP_PREFIXES)
    }
    env["PATH"] = safe_path(env.get("PATH"))
    env.update(extra or {})
    return env


def popen(argv: Sequence[str], *, env: Mapping[str, str] | None = None, **kwargs: Any) -> subprocess.Popen:
    """subprocess.Popen with cwd "/" and `safe_env(env)`; argv[0] must be an absolute path."""
    if not os.path.isabs(argv[0]):
        raise ValueError(f"host processes are started by absolute path, not {argv[0]!r}")
    kwargs.setdefault("cwd", "/")
    return subprocess.Popen(list(argv), env=safe_env(env), **kwargs)
