"""GPU status through NVML (nvidia-ml-py): name, utilisation, memory, temperature, processes.

Shared by the REST API and the GpuStatus widget. It must never raise because a machine has no GPU: a missing
driver or device is the ordinary "no GPU" state with a readable reason.
"""

from __future__ import annotations

import time
from typing import Any


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _processes(pynvml: Any, handle: Any) -> list[dict]:
    procs: dict[int, dict] = {}
    for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        try:
            items = getattr(pynvml, getter)(handle)
        except (pynvml.NVMLError, AttributeError):
            continue
        for proc in items:
            used = getattr(proc, "usedGpuMemory", None)
            procs[proc.pid] = {"pid": proc.pid, "name": _process_name(proc.pid), "memory_used": used}
    return sorted(procs.values(), key=lambda p: p["pid"])


def _process_name(pid: int) -> str:
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:  # the process may be in another pid namespace or gone
        return "?"


def _device(pynvml: Any, index: int) -> dict:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    info: dict[str, Any] = {"index": index, "name": _text(pynvml.nvmlDeviceGetName(handle))}
    try:
        util = pynvml.nvmlDeviceGetUtilizationRates(handle)
        info["utilization_gpu"], info["utilization_memory"] = util.gpu, util.memory
    except pynvml.NVMLError:
        info["utilization_gpu"] = info["utilization_memory"] = None
    mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
    info["memory_used"], info["memory_total"] = mem.used, mem.total
    try:
        info["temperature_c"] = pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
    except pynvml.NVMLError:
        info["temperature_c"] = None
    info["processes"] = _processes(pynvml, handle)
    return info


def gpu_snapshot() -> dict:
    """{"available", "reason", "driver", "gpus": [...], "ts"}; never raises for a machine without GPU."""
    result: dict[str, Any] = {"available": False, "reason": "", "driver": None, "gpus": [], "ts": time.time()}
    try:
        import pynvml
    except ImportError:
        result["reason"] = "nvidia-ml-py is not installed: pip install nvidia-ml-py"
        return result
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        result["reason"] = f"no GPU: NVIDIA driver not available ({_text(exc)})"
        return result
    try:
        result["driver"] = _text(pynvml.nvmlSystemGetDriverVersion())
        count = pynvml.nvmlDeviceGetCount()
        result["gpus"] = [_device(pynvml, i) for i in range(count)]
        result["available"] = count > 0
        if not count:
            result["reason"] = "no GPU: the NVIDIA driver reports no device"
    except pynvml.NVMLError as exc:
        result["reason"] = f"no GPU: NVML query failed ({_text(exc)})"
    finally:
        pynvml.nvmlShutdown()
    return result
