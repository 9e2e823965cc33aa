"""Policy decision time: `CompiledPolicy.decide` with 10, 100 and 1,000 rules, beside baselines
measured in the same run (a no-op call, and a naive linear-scan matcher without normalisation).

Target (issue 2): < 20 us per decision at 1,000 rules. Prints mean, p50 and p99 in microseconds.
Run: .venv/bin/python bench/bench_policy.py [--calls N]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

from jupyter_openshell.policy import RequestInfo, _yamlfast, parse_policy

TARGET_US = 20.0


def distinct_hosts(n: int) -> str:
    rules = "".join(
        f'    - host: "h{i}.example.com"\n'
        f'      paths:\n        - path: "/api/v1/items/*"\n          methods: ["GET", "HEAD"]\n'
        f'        - path: "/static/**"\n'
        f"      action: allow\n"
        for i in range(n - 1)
    )
    return "network:\n  egress:\n" + rules + "    - action: deny\n"


def one_host(n: int) -> str:
    rules = "".join(
        f'    - host: "api.example.com"\n      paths: ["/svc{i}/**"]\n'
        f'      methods: ["GET"]\n      action: allow\n'
        for i in range(n - 1)
    )
    return "network:\n  egress:\n" + rules + "    - action: deny\n"


class NaiveMatcher:
    """Baseline: first-match linear scan over (host, path regex, methods); no index, no normalisation."""

    def __init__(self, policy):
        self.rules = []
        for r in policy.egress:
            paths = [
                (
                    re.compile(p.path.replace("**", "\0").replace("*", "[^/]+").replace("\0", ".*") + r"\Z"),
                    set(p.methods or ()),
                )
                for p in (r.paths or ())
            ]
            self.rules.append((r.host, set(r.methods or ()), paths, r.action))

    def decide(self, req: RequestInfo) -> str:
        host, path, method = req.host.lower(), req.path, req.method
        for rhost, rmethods, paths, action in self.rules:
            if rhost is not None and rhost != host:
                continue
            if rmethods and method not in rmethods:
                continue
            if paths and not any(rx.match(path) and (not ms or method in ms) for rx, ms in paths):
                continue
            return action
        return "deny"


def noop(req: RequestInfo) -> None:
    return None


def measure(fn, reqs: list[RequestInfo], calls: int) -> tuple[float, float, float]:
    """Per-call times cycling through `reqs` (many distinct hosts defeat the per-host caches)."""
    k = len(reqs)
    for i in range(min(2000, calls)):
        fn(reqs[i % k])
    samples = []
    clock = time.perf_counter_ns
    for i in range(calls):
        req = reqs[(i + 7919) % k]
        t0 = clock()
        fn(req)
        samples.append(clock() - t0)
    samples.sort()
    us = [s / 1000 for s in samples]
    return statistics.fmean(us), us[len(us) // 2], us[int(len(us) * 0.99)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    args = ap.parse_args()
    print(
        f"policy decision time, {args.calls} calls per row, microseconds"
        f" (target < {TARGET_US:.0f} us at 1,000 rules)"
    )
    print(f"{'shape':<16}{'rules':>6}  {'request':<32}{'matcher':<22}{'mean':>8}{'p50':>8}{'p99':>8}")
    for shape, build, req_for in (
        (
            "distinct hosts",
            distinct_hosts,
            lambda n: RequestInfo("GET", "https", f"h{n - 2}.example.com", 443, "/api/v1/items/42"),
        ),
        (
            "distinct hosts",
            distinct_hosts,
            lambda n: RequestInfo("GET", "https", "unknown.example.org", 443, "/api/v1/items/42"),
        ),
        (
            "one host",
            one_host,
            lambda n: RequestInfo("GET", "https", "api.example.com", 443, f"/svc{n - 2}/a/b"),
        ),
        (
            "cold caches",
            distinct_hosts,
            lambda n: [
                RequestInfo("GET", "https", f"n{k}.unknown.example.org", 443, "/api/v1/items/42")
                for k in range(50000)
            ],
        ),
    ):
        for n in (10, 100, 1000):
            policy = parse_policy(build(n))
            compiled = policy.compile()
            naive = NaiveMatcher(policy)
            reqs = req_for(n)
            reqs = reqs if isinstance(reqs, list) else [reqs]
            req = reqs[0]
            expected = "allow" if "unknown" not in req.host else "deny"
            assert compiled.decide(req).action == expected and naive.decide(req) == expected
            what = (
                f"{req.method} {req.host}{req.path}"[:31] if len(reqs) == 1 else f"{len(reqs)} distinct hosts"
            )
            for label, fn in (
                ("decide()", compiled.decide),
                ("baseline: naive scan", naive.decide),
                ("baseline: no-op call", noop),
            ):
                mean, p50, p99 = measure(fn, reqs, args.calls)
                flag = ""
                if label == "decide()" and n == 1000:
                    flag = "  OK" if mean < TARGET_US else "  OVER TARGET"
                print(f"{shape:<16}{n:>6}  {what:<32}{label:<22}{mean:>8.2f}{p50:>8.2f}{p99:>8.2f}{flag}")
    load_times()


def load_times() -> None:
    """parse_policy + compile (what a hot reload costs), libyaml fast path beside ruamel only."""
    print("\nparse + compile time of a policy file, milliseconds (mean of 3)")
    fast_load = _yamlfast.load
    for n in (10, 100, 1000):
        text = distinct_hosts(n)
        row = []
        for label, loader in (("libyaml fast path", fast_load), ("ruamel only", lambda text: None)):
            _yamlfast.load = loader
            try:
                t0 = time.perf_counter()
                for _ in range(3):
                    parse_policy(text).compile()
                row.append(f"{label} {(time.perf_counter() - t0) / 3 * 1000:8.1f}")
            finally:
                _yamlfast.load = fast_load
        print(f"{n:>6} rules  " + "   ".join(row))


if __name__ == "__main__":
    main()
