"""Scaling of the policy proxy with worker processes (SO_REUSEPORT): req/s of small HTTP keep-alive
GETs with --workers 1 and --workers 2, measured in the same run (target: >= 1.7x with 2 workers).

The load generator runs in `--clients` processes (default 1: on 2 cores it competes with the workers).
Usage: .venv/bin/python bench/proxy_workers.py [--seconds 6] [--conns 16]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
from collections import Counter

from _proxy_common import Procs, bench_policy, load


def _client(args: tuple) -> dict[str, float]:
    port, up, conns, seconds = args
    return load(port, up, proxy=True, tls=False, conns=conns, seconds=seconds)


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
        with mp.Pool(args.clients) as pool:
            for _ in range(args.rounds):
                for n, port in proxies.items():
                    per = max(1, args.conns // args.clients)
                    res = pool.map(_client, [(port, up, per, args.seconds / args.rounds)] * args.clients)
                    totals[n].append(sum(r["rps"] for r in res))
        one, two = (sum(totals[n]) / len(totals[n]) for n in (1, 2))
        print(f"workers=1: {one:8.0f} req/s")
        print(f"workers=2: {two:8.0f} req/s")
        print(f"scaling: {two / one:.2f}x (target >= 1.7x)")
        share = Counter(line.split('"id":"', 1)[1].split("-")[1]
                        for line in (started[2][1] / "flows" / "flows.jsonl").read_text().splitlines())
        print("requests per worker process (2 workers):", sorted(share.values(), reverse=True))


if __name__ == "__main__":
    main()
