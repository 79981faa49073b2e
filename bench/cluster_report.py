"""Markdown tables from bench/cluster.sh's results: fan-out per set-up with CPU and Redis
commands per message, then the takeover times. Medians when a set-up ran several times."""
import json
import statistics
import sys
from collections import defaultdict


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def main(results_path, takeover_path):
    runs = defaultdict(list)
    with open(results_path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                runs[(r.get("scenario"), r.get("label"))].append(r)
    print("| scenario | set-up | nodes | delivered/s | p50 ms | p99 ms | loss | dup "
          "| servers CPU % | Redis CPU % | CPU µs per delivery (servers + Redis) "
          "| Redis commands per publish | per delivery | commands (per publish) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (scenario, label), rs in runs.items():
        if any("error" in r for r in rs):
            print(f"| {scenario} | {label} | | failed: {rs[0].get('error')} |||||||||||")
            continue
        delivered = median([r["delivered_per_s"] for r in rs])
        server_cpu = median([r.get("server_cpu_pct") for r in rs])
        redis_cpu = median([r.get("redis_cpu_pct") for r in rs])
        total_cpu = (server_cpu or 0) + (redis_cpu or 0)
        per_delivery = total_cpu / 100 / delivered * 1e6 if delivered else None
        published = median([r["published"] for r in rs])
        deliveries = median([r["delivered"] for r in rs])
        calls = defaultdict(list)
        for r in rs:
            for name, n in r.get("redis_calls", {}).items():
                calls[name].append(n)
        total_calls = sum(median(v) for v in calls.values()) if calls else 0
        per_pub = total_calls / published if calls and published else None
        per_del = total_calls / deliveries if calls and deliveries else None
        top = sorted(((median(v) / published, k) for k, v in calls.items()), reverse=True)[:4]
        breakdown = ", ".join(f"{k} {n:.2f}" for n, k in top) if calls else "-"
        r0 = rs[0]
        print(f"| {scenario} | {label} | {r0.get('nodes', 1)} | {fmt(delivered, 0)} "
              f"| {fmt(median([r['lat_p50_ms'] for r in rs]), 2)} | {fmt(median([r['lat_p99_ms'] for r in rs]), 2)} "
              f"| {fmt(median([r['loss'] for r in rs]), 0)} | {fmt(median([r['duplicates'] for r in rs]), 0)} "
              f"| {fmt(server_cpu)} | {fmt(redis_cpu)} | {fmt(per_delivery, 2)} "
              f"| {fmt(per_pub, 2)} | {fmt(per_del, 4)} | {breakdown} |")
    try:
        with open(takeover_path) as f:
            takeovers = [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        takeovers = []
    if takeovers:
        print()
        print("| node goes by | time to the next delivery (ms, median) | runs | every message once, in order |")
        print("|---|---|---|---|")
        for how in ("kill", "drain"):
            rs = [t for t in takeovers if t["how"] == how]
            if rs:
                ok = all(t["duplicates"] == 0 and t["in_order_no_gap"] for t in rs)
                print(f"| {how} | {fmt(median([t['takeover_ms'] for t in rs]), 0)} | {len(rs)} | {'yes' if ok else 'NO'} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "/dev/null")
