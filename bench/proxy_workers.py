"""Scaling of the policy proxy with worker processes (SO_REUSEPORT): req/s of small HTTP keep-alive
GETs with --workers 1 and --workers 2, measured in the same run (target: >= 1.7x with 2 workers).

The load generator (`load_plain`: non-blocking sockets, about half the CPU per request of the asyncio
client) runs in `--clients` processes (default 1: on 2 cores it competes with the workers). The machine
is shared: compare the two numbers of one run, never numbers of different runs.
Usage: .venv/bin/python bench/proxy_workers.py [--seconds 6] [--conns 16]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
from collections import Counter

import psutil
from _proxy_common import Procs, bench_policy, load_plain


def _client(args: tuple) -> dict[str, float]:
    port, up, conns, seconds = args
    return load_plain(port, up, conns=conns, seconds=seconds)


def _cpu(pid: int) -> float:
    """CPU seconds used so far by the proxy process and its workers."""
    proc = psutil.Process(pid)
    return sum(t.user + t.system for t in (p.cpu_times() for p in [proc, *proc.children()]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"cpus: {os.cpu_count()}; {args.conns} keep-alive connections from {args.clients} client processes")
    with Procs() as procs:
        up = procs.upstream()
        started = {n: procs.our_proxy(bench_policy(up), None, workers=n, name=f"w{n}") for n in (1, 2)}
        proxies = {n: s[0] for n, s in started.items()}
        totals: dict[int, list[float]] = {1: [], 2: []}
        cpu = {n: [0.0, 0] for n in (1, 2)}  # proxy CPU seconds, requests: robust to a busy machine
        with mp.Pool(args.clients) as pool:
            for _ in range(args.rounds):
                for n, port in proxies.items():
                    per = max(1, args.conns // args.clients)
                    before = _cpu(started[n][2].pid)
                    res = pool.map(_client, [(port, up, per, args.seconds / args.rounds)] * args.clients)
                    cpu[n][0] += _cpu(started[n][2].pid) - before
                    cpu[n][1] += sum(int(r["n"]) for r in res)
                    totals[n].append(sum(r["rps"] for r in res))
        one, two = (sum(totals[n]) / len(totals[n]) for n in (1, 2))
        for n, rps in ((1, one), (2, two)):
            print(f"workers={n}: {rps:8.0f} req/s   proxy CPU {cpu[n][0] / cpu[n][1] * 1e6:6.0f} us/request")
        print(f"scaling: {two / one:.2f}x (target >= 1.7x)")
        share = Counter(line.split('"id":"', 1)[1].split("-")[1]
                        for line in (started[2][1] / "flows" / "flows.jsonl").read_text().splitlines())
        print("requests per worker process (2 workers):", sorted(share.values(), reverse=True))


if __name__ == "__main__":
    main()
