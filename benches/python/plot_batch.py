"""Plots kiln-batch's throughput and p99 latency against offered load.

Reads one or more JSON reports written by `cargo run -p kiln-batch --release --example
batch_bench -- OUT.json` (or by the device bundle's batch_bench) and writes a PNG with two
panels: achieved vs offered throughput (each run's closed-loop capacity as a dashed line) and
p50/p99 latency vs offered load. Several reports (e.g. 2, 4 and 8 instances) share the axes,
each labelled by its instances, staging threads and CUDA-graph setting.

    python3 benches/python/plot_batch.py OUT.png run1.json [run2.json ...]
    python3 benches/python/plot_batch.py run.json OUT.png          (the older argument order)
"""

import json
import sys


def label(r: dict) -> str:
    parts = [f"{r['instances']} instances"]
    if "staging_threads" in r:
        parts.append(f"{r['staging_threads']} staging threads")
    if r.get("cuda_graphs") is False:
        parts.append("no CUDA graphs")
    return ", ".join(parts)


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 2 and args[1].endswith(".png"):
        args = [args[1], args[0]]
    if len(args) < 2 or not args[0].endswith(".png"):
        sys.exit("usage: plot_batch.py OUT.png BATCH_BENCH.json [MORE.json ...]")
    out, inputs = args[0], args[1:]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for path in inputs:
        with open(path) as f:
            runs.append(json.load(f))
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6))
    top = 0.0
    for i, r in enumerate(runs):
        color = f"C{i}"
        pts = r["points"]
        off = [p["offered_per_s"] for p in pts]
        ach = [p["achieved_per_s"] for p in pts]
        p50 = [p["latency_ms"]["p50"] for p in pts]
        p99 = [p["latency_ms"]["p99"] for p in pts]
        top = max(top, max(off), r["capacity_per_s"])
        name = label(r)
        a.plot(off, ach, "o-", color=color, label=f"achieved, {name}")
        a.axhline(r["capacity_per_s"], color=color, ls="--", lw=1)
        b.plot(off, p50, "o-", color=color, label=f"p50, {name}")
        b.plot(off, p99, "s:", color=color, label=f"p99, {name}")
    a.plot([0, top], [0, top], ":", color="grey", label="offered")
    a.set_xlabel("offered load (requests/s, batch-1 requests)")
    a.set_ylabel("completed requests/s (dashed: closed-loop capacity)")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    b.set_xlabel("offered load (requests/s)")
    b.set_ylabel("latency, acceptance to answer (ms)")
    b.set_yscale("log")
    b.legend(fontsize=7)
    b.grid(alpha=0.3, which="both")
    r = runs[0]
    fig.suptitle(
        f"kiln-batch: {r['model']} {r['precision']} on {r['device']} — max batch "
        f"{r['max_batch']}, queue delay {r['max_queue_delay_us']} µs"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print("wrote", out)


if __name__ == "__main__":
    main()
