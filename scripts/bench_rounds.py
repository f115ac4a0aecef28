#!/usr/bin/python3
"""Runs flatring-bench for several rounds and reports each row as the median of its per-round
ratio to a reference row measured in the same round, with the range.

    scripts/bench_rounds.py --bench build/bench/flatring-bench --rounds 5 \\
        --transport flatring,flatring-typed,raw-ring,pipe --size 64,1KiB,1MiB --ref flatring

Rounds alternate the order of the rows (forward, then reversed). Ratios are taken inside one round
(the rows ran minutes apart at most, on the same machine state),
then summarised over rounds: on a shared machine the absolute figures swing between rounds far more
than the ratios do. Throughput ratios are msgs/s over the reference's; latency ratios are the
round-trip percentiles over the reference's (lower is better). Writes every round's JSON and the
summary (--out).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def run_round(args, i, tmp):
    out = os.path.join(tmp, f"round{i}.json")
    transports = args.transport.split(",")
    if i % 2 == 1:
        # Alternate the order: a row that always runs right after a spinning one, or always first
        # on a CPU coming out of idle, would carry that position's cost in every round.
        transports.reverse()
    cmd = [args.bench, "--as-given", "--transport", ",".join(transports), "--size", args.size,
           "--budget",
           str(args.budget), "--json", out]
    if args.pattern:
        cmd += ["--pattern", args.pattern]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def fmt_rate(v):
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def summarise(rounds, ref, lat_ref):
    rows = {}
    for rnd in rounds:
        by = {(r["transport"], r["pattern"], r["payload_bytes"]): r for r in rnd["results"]}
        for (t, pat, size), r in by.items():
            if pat == "throughput":
                base = by.get((ref, pat, size))
                if base is None:
                    continue
                rows.setdefault((pat, size, t, "msgs/s"), []).append(
                    (r["msgs_per_s"], r["msgs_per_s"] / base["msgs_per_s"]))
            else:
                base = by.get((lat_ref, pat, size))
                if base is None:
                    continue
                for key in ("rtt_p50_ns", "rtt_p99_ns", "rtt_p999_ns"):
                    rows.setdefault((pat, size, t, key), []).append((r[key], r[key] / base[key]))
    out = []
    for (pat, size, t, metric), vals in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        absolute = [v for v, _ in vals]
        ratio = [q for _, q in vals]
        out.append({"pattern": pat, "payload_bytes": size, "transport": t, "metric": metric,
                    "rounds": len(vals), "median": statistics.median(absolute),
                    "min": min(absolute), "max": max(absolute),
                    "ratio_median": statistics.median(ratio), "ratio_min": min(ratio),
                    "ratio_max": max(ratio)})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", default="build/bench/flatring-bench")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--transport", required=True)
    p.add_argument("--size", default="64,1KiB,1MiB")
    p.add_argument("--pattern", default="")
    p.add_argument("--budget", type=float, default=0.5)
    p.add_argument("--ref", default="flatring", help="throughput reference row")
    p.add_argument("--lat-ref", default=None, help="latency reference row (default --ref)")
    p.add_argument("--out", default="")
    args = p.parse_args()
    lat_ref = args.lat_ref or args.ref
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}", file=sys.stderr, flush=True)
            rounds.append(run_round(args, i, tmp))
    summary = summarise(rounds, args.ref, lat_ref)
    print(f"{args.rounds} rounds of {args.budget} s; ratios to {args.ref} (throughput) and "
          f"{lat_ref} (latency) in the same round: median (min-max)")
    for s in summary:
        if s["metric"] == "msgs/s":
            a = f"{fmt_rate(s['median'])}/s ({fmt_rate(s['min'])}-{fmt_rate(s['max'])})"
        else:
            a = f"{s['median'] / 1000:.3g} us ({s['min'] / 1000:.3g}-{s['max'] / 1000:.3g})"
        print(f"{s['pattern']:10} {s['payload_bytes']:>8} {s['transport']:24} {s['metric']:12} "
              f"{a:32} {s['ratio_median']:.2f}x ({s['ratio_min']:.2f}-{s['ratio_max']:.2f})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": rounds[0]["machine"], "rounds": rounds, "summary": summary}, f,
                      indent=1)


if __name__ == "__main__":
    main()
