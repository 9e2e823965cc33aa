"""NVIDIA GPU pass-through for the local backend: which device nodes and driver files to bind.

`gpu_binds()` returns (source, target) pairs: /dev/nvidia* nodes, /proc/driver/nvidia, /sys (read-only,
nvidia-smi walks the PCI tree) and driver libraries that live outside /usr (which is always bound).
It raises `SandboxError` when a GPU is requested but this host has none. It must never bind
anything but the NVIDIA devices and their driver files.
"""

from __future__ import annotations

import glob
import os
import subprocess

from ._types import SandboxError

DRIVER_LIBS = ("libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so", "libnvidia-nvvm.so")


def _driver_lib_dirs() -> list[str]:
    try:
        out = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    dirs = set()
    for line in out.splitlines():
        if "=>" in line and any(lib in line for lib in DRIVER_LIBS):
            path = os.path.realpath(line.split("=>", 1)[1].strip())
            dirs.add(os.path.dirname(path))
    return sorted(d for d in dirs if not d.startswith("/usr/"))


def gpu_binds() -> list[tuple[str, str]]:
    nodes = sorted(p for p in glob.glob("/dev/nvidia*") if not os.path.isdir(p))
    if "/dev/nvidiactl" not in nodes:
        raise SandboxError(
            "this sandbox asks for a GPU (`gpu: true` in its policy or --gpu) but this host has no NVIDIA "
            "device (/dev/nvidiactl is missing): install the NVIDIA driver, or remove `gpu: true`"
        )
    binds = [(n, n) for n in nodes]
    binds += [(d, d) for d in glob.glob("/dev/nvidia-caps") if os.path.isdir(d)]
    for path in ("/proc/driver/nvidia", "/sys"):
        if os.path.exists(path):
            binds.append((path, path))
    binds += [(d, d) for d in _driver_lib_dirs()]
    return binds
