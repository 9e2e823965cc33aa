"""Requests/s and added latency of the policy proxy vs a bare mitmdump (no-op addon) vs direct,
for small HTTP keep-alive and HTTPS (CONNECT + TLS, keep-alive inside the tunnel) GETs on loopback.

Targets: ours >= 90% of bare mitmdump's req/s; ours adds <= 0.3 ms p50 latency over bare.
Usage: .venv/bin/python bench/proxy_throughput.py [--seconds 4] [--conns 4]
"""

from __future__ import annotations

import argparse
import statistics

from _proxy_common import Procs, bench_policy, load


def _merge(runs: list[dict[str, float]]) -> dict[str, float]:
    """Throughput over all rounds; latency quantiles as the median of the rounds'."""
    total = sum(r["n"] for r in runs)
    secs = sum(r["n"] / r["rps"] for r in runs)
    return {"rps": total / secs, "p50": statistics.median(r["p50"] for r in runs),
            "p99": statistics.median(r["p99"] for r in runs), "n": total}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    with Procs() as procs:
        test_ca, cert, key = procs.test_ca()
        results = {}
        for scheme in ("http", "https"):
            tls = scheme == "https"
            up = procs.upstream((cert, key) if tls else None)
            bare = procs.bare_mitmdump(test_ca)
            ours, state, _ = procs.our_proxy(bench_policy(up), test_ca, name=scheme)
            ours_ca = state / "ca" / "ca-bundle.pem"
            bare_ca = procs.tmp / "bare-conf" / "mitmproxy-ca-cert.pem"
            targets = {"direct": (up, False, test_ca), "bare mitmdump": (bare, True, bare_ca),
                       "policy proxy": (ours, True, ours_ca)}
            # interleave rounds so load from other processes on the machine hits every case alike
            acc: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            lat_acc: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (port, via_proxy, ca) in targets.items():
                    acc[name].append(load(port, up, proxy=via_proxy, tls=tls, conns=args.conns,
                                          seconds=args.seconds / args.rounds, cafile=ca))
                    lat_acc[name].append(load(port, up, proxy=via_proxy, tls=tls, conns=1,
                                              seconds=args.seconds / args.rounds / 2, cafile=ca))
            for name in targets:
                results[(scheme, name)] = (_merge(acc[name]), _merge(lat_acc[name]))
        print(f"{'case':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}   (req/s: {args.conns} conns; "
              "latency: 1 conn, sequential)")
        for (scheme, name), (thr, lat) in results.items():
            print(f"{scheme + ' ' + name:<22}{thr['rps']:>10.0f}{lat['p50']:>10.3f}{lat['p99']:>10.3f}")
        for scheme in ("http", "https"):
            direct = results[(scheme, "direct")][1]
            bare_t, bare_l = results[(scheme, "bare mitmdump")]
            ours_t, ours_l = results[(scheme, "policy proxy")]
            ratio = ours_t["rps"] / bare_t["rps"]
            print(f"{scheme}: ours/bare throughput {ratio:.1%} (target >= 90%); added p50 latency: bare "
                  f"{bare_l['p50'] - direct['p50']:.3f} ms, ours {ours_l['p50'] - direct['p50']:.3f} ms, "
                  f"ours-bare {ours_l['p50'] - bare_l['p50']:+.3f} ms (target <= 0.3); p99 ours-bare "
                  f"{ours_l['p99'] - bare_l['p99']:+.3f} ms")


if __name__ == "__main__":
    main()
