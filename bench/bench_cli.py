"""The `openshell` CLI as agents and scripts call it: whole processes, beside `python -c pass`.

Times `openshell sandbox exec NAME -- true` (target < 50 ms) and create + exec + rm of a fresh sandbox
(three processes, target < 150 ms), interleaved with `python -c pass` so that machine noise hits them
alike. Runs in a private state directory with its own proxy (`openshell proxy start`, as a user who
creates sandboxes in a loop would keep it), removed at the end.
Usage: .venv/bin/python bench/bench_cli.py [--runs 20]. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPENSHELL = str(Path(sys.executable).parent / "openshell")
TARGETS = {"sandbox exec NAME -- true": 50.0, "create + exec + rm": 150.0}


def _run(*argv: str, env: dict[str, str]) -> float:
    """Seconds one command took, as a whole process; fails loudly if it failed."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="openshell-bench-cli-"))
    env = {**os.environ, "OPENSHELL_STATE_DIR": str(state)}
    env.pop("OPENSHELL_KEEP_PROXY", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: from bytecode (the warm-up round writes it)
    results: dict[str, list[float]] = {
        "python -c pass": [], "sandbox exec NAME -- true": [], "sandbox create": [], "sandbox rm": [],
        "create + exec + rm": [],
    }
    try:
        _run(OPENSHELL, "proxy", "start", env=env)
        _run(OPENSHELL, "sandbox", "create", "--name", "bench", env=env)
        for i in range(args.runs + 1):  # the first round warms the page cache and is not counted
            plain = _run(sys.executable, "-c", "pass", env=env)
            exec_ = _run(OPENSHELL, "sandbox", "exec", "bench", "--", "true", env=env)
            name = f"cycle-{i}"
            create = _run(OPENSHELL, "sandbox", "create", "--name", name, env=env)
            cycle_exec = _run(OPENSHELL, "sandbox", "exec", name, "--", "true", env=env)
            remove = _run(OPENSHELL, "sandbox", "rm", name, env=env)
            if i:
                results["python -c pass"].append(plain)
                results["sandbox exec NAME -- true"].append(exec_)
                results["sandbox create"].append(create)
                results["sandbox rm"].append(remove)
                results["create + exec + rm"].append(create + cycle_exec + remove)
    finally:
        subprocess.run([OPENSHELL, "sandbox", "rm", "--all"], env=env, capture_output=True)
        subprocess.run([OPENSHELL, "proxy", "stop"], env=env, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)

    print(f"openshell CLI as whole processes, {args.runs} runs each, median (min..max); "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for label, values in results.items():
        med = statistics.median(values) * 1000
        target = TARGETS.get(label)
        verdict = f"  target < {target:.0f} ms: {'met' if med < target else 'MISSED'}" if target else ""
        print(f"  {label:28} {med:7.1f} ms  ({min(values) * 1000:.1f}..{max(values) * 1000:.1f}){verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
