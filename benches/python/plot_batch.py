"""Plots kiln-batch's throughput and p99 latency against offered load.

Reads the JSON written by `cargo run -p kiln-batch --release --example batch_bench -- OUT.json`
(or by the device bundle's batch_bench) and writes a PNG with two panels: achieved vs offered
throughput (with the closed-loop capacity as a line) and p50/p99 latency vs offered load.

    python3 benches/python/plot_batch.py batch_bench.json docs/perf/batch-resnet50-fp16.png
"""

import json
import sys


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: plot_batch.py BATCH_BENCH.json OUT.png")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(sys.argv[1]) as f:
        r = json.load(f)
    pts = r["points"]
    off = [p["offered_per_s"] for p in pts]
    ach = [p["achieved_per_s"] for p in pts]
    p50 = [p["latency_ms"]["p50"] for p in pts]
    p99 = [p["latency_ms"]["p99"] for p in pts]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot(off, ach, "o-", label="achieved")
    a.plot(off, off, ":", color="grey", label="offered")
    a.axhline(r["capacity_per_s"], color="red", ls="--", lw=1, label="closed-loop capacity")
    a.set_xlabel("offered load (requests/s, batch-1 requests)")
    a.set_ylabel("completed requests/s")
    a.legend()
    a.grid(alpha=0.3)
    b.plot(off, p50, "o-", label="p50")
    b.plot(off, p99, "s-", label="p99")
    b.set_xlabel("offered load (requests/s)")
    b.set_ylabel("latency, acceptance to answer (ms)")
    b.set_yscale("log")
    b.legend()
    b.grid(alpha=0.3, which="both")
    fig.suptitle(
        f"kiln-batch: {r['model']} {r['precision']} on {r['device']} — max batch "
        f"{r['max_batch']}, {r['instances']} instances, queue delay {r['max_queue_delay_us']} µs"
    )
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=120)
    print("wrote", sys.argv[2])


if __name__ == "__main__":
    main()
