#!/usr/bin/env python3
"""Merge step of `cargo xtask compare`: kiln's `kiln bench --export-json` files and
torch_compare.py's JSON into one markdown table and one PNG.

    python3 compare_merge.py merge RAW_DIR OUT_DIR
        RAW_DIR holds kiln_<model>_<precision>_b<batch>.json (one `kiln bench` run each) and
        torch.json (torch_compare.py). Writes OUT_DIR/compare.md, OUT_DIR/compare.png (needs
        matplotlib; without it the table is still written and the reason printed) and
        OUT_DIR/compare.json (the merged rows).
    python3 compare_merge.py shapes INSPECT_JSON BATCH
        Prints `--min-shapes .. --opt-shapes .. --max-shapes ..` for `kiln build`: every input of
        `kiln inspect --json`'s output with dimension 0 (when not fixed) at 1 / BATCH / BATCH.

Both sides are compute-only: kiln's GPU compute time (CUDA events around the enqueue, inputs
already on the device) against PyTorch's forward call timed the same way. Items/s is
batch / median. Fields missing from an input file are shown as "-", never invented.
Runs anywhere with python3 (the merge is tested on synthetic files by xtask's tests).
"""

import json
import os
import re
import sys

KILN_NAME = re.compile(r"^kiln_(?P<model>.+)_(?P<precision>[a-z0-9]+)_b(?P<batch>\d+)\.json$")
TORCH_MODES = (("eager", "eager"), ("cuda_graph", "CUDA graph"), ("compile", "torch.compile"))


def _median(stats):
    """The median of a stats object (`median` or `median_ms`), or None."""
    if not isinstance(stats, dict):
        return None
    for k in ("median", "median_ms"):
        v = stats.get(k)
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
    return None


def load_kiln(raw_dir):
    """{(model, precision, batch): row} from the kiln_*.json files; unreadable files become
    rows with an `error`."""
    rows = {}
    for name in sorted(os.listdir(raw_dir)):
        m = KILN_NAME.match(name)
        if not m:
            continue
        key = (m["model"], m["precision"], int(m["batch"]))
        try:
            with open(os.path.join(raw_dir, name)) as fh:
                d = json.load(fh)
        except (OSError, ValueError) as e:
            rows[key] = {"error": f"{name}: {e}"}
            continue
        rows[key] = {
            "gpu_ms": _median(d.get("gpu_compute_ms")),
            "host_ms": _median(d.get("host_latency_ms")),
            "items_per_s": d.get("throughput_items_per_s"),
            "qps": d.get("throughput_qps"),
            "device": d.get("device"),
        }
    return rows


def load_torch(raw_dir):
    """(device, {(model, precision, batch): {mode: median ms or error text}})."""
    path = os.path.join(raw_dir, "torch.json")
    if not os.path.exists(path):
        return None, {}
    with open(path) as fh:
        d = json.load(fh)
    rows = {}
    for r in d.get("rows", []):
        key = (r.get("model"), r.get("precision"), int(r.get("batch", 0)))
        modes = {}
        for mode, _ in TORCH_MODES:
            s = r.get(mode)
            ms = _median(s)
            modes[mode] = ms if ms is not None else (s or {}).get("error", "not run")
        rows[key] = modes
    return d.get("device"), rows


def _fmt(v, digits=3):
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) else "-"


def _per_s(batch, ms):
    return batch / (ms * 1e-3) if isinstance(ms, (int, float)) and ms > 0 else None


def merge(raw_dir):
    kiln = load_kiln(raw_dir)
    torch_device, torch = load_torch(raw_dir)
    rows = []
    for key in sorted(set(kiln) | set(torch)):
        model, precision, batch = key
        k = kiln.get(key, {"error": "no kiln result"})
        t = torch.get(key, {})
        row = {"model": model, "precision": precision, "batch": batch, "kiln": k, "torch": t}
        best = [v for v in t.values() if isinstance(v, float)]
        row["torch_best_ms"] = min(best) if best else None
        kms = k.get("gpu_ms")
        row["speedup"] = (
            row["torch_best_ms"] / kms if kms and row["torch_best_ms"] else None
        )
        rows.append(row)
    kiln_device = next((r["device"] for r in kiln.values() if r.get("device")), None)
    return {"kiln_device": kiln_device, "torch_device": torch_device, "rows": rows}


def markdown(merged):
    out = [
        "# kiln vs PyTorch",
        "",
        f"kiln on: {merged['kiln_device'] or '-'}; PyTorch on: {merged['torch_device'] or '-'}.",
        "Compute only (inputs on the device), median GPU time in ms from CUDA events; items/s = "
        "batch / median. `kiln / best` is the best PyTorch time over kiln's (above 1: kiln is "
        "faster).",
        "",
        "| model | precision | batch | kiln ms | kiln items/s | kiln host latency ms "
        "| eager ms | CUDA graph ms | torch.compile ms | best torch items/s | kiln / best |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for r in merged["rows"]:
        k, t, b = r["kiln"], r["torch"], r["batch"]
        if "error" in k:
            notes.append(f"- {r['model']} {r['precision']} b{b}: kiln: {k['error']}")
        cells = []
        for mode, label in TORCH_MODES:
            v = t.get(mode)
            if isinstance(v, float):
                cells.append(_fmt(v))
            else:
                cells.append("-")
                if v is not None:
                    notes.append(f"- {r['model']} {r['precision']} b{b}: {label}: {v}")
        out.append(
            f"| {r['model']} | {r['precision']} | {b} | {_fmt(k.get('gpu_ms'))} "
            f"| {_fmt(_per_s(b, k.get('gpu_ms')), 0)} | {_fmt(k.get('host_ms'))} "
            f"| {' | '.join(cells)} | {_fmt(_per_s(b, r['torch_best_ms']), 0)} "
            f"| {_fmt(r['speedup'], 2)} |"
        )
    if notes:
        out += ["", "Missing cells:", ""] + notes
    return "\n".join(out) + "\n"


def plot(merged, path):
    """Throughput against batch per model (log-log), and latency at batch 1. Returns None, or
    why no plot was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"matplotlib is not installed ({e})"
    rows = merged["rows"]
    models = sorted({r["model"] for r in rows})
    if not models:
        return "no rows to plot"
    fig, axes = plt.subplots(1, len(models) + 1, figsize=(5 * (len(models) + 1), 4.2))
    series = [("kiln", lambda r: r["kiln"].get("gpu_ms"))] + [
        (label, (lambda m: lambda r: r["torch"].get(m))(mode)) for mode, label in TORCH_MODES
    ]
    for ax, model in zip(axes, models):
        for precision in sorted({r["precision"] for r in rows if r["model"] == model}):
            mine = sorted(
                (r for r in rows if r["model"] == model and r["precision"] == precision),
                key=lambda r: r["batch"],
            )
            for label, get in series:
                pts = [(r["batch"], _per_s(r["batch"], get(r))) for r in mine]
                pts = [(x, y) for x, y in pts if y is not None]
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=f"{label} {precision}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel("items/s (compute only)")
        ax.set_title(model)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[-1]
    ones = [r for r in rows if r["batch"] == 1]
    width = 1.0 / (len(series) + 1)
    for i, (label, get) in enumerate(series):
        xs, ys = [], []
        for j, r in enumerate(ones):
            v = get(r)
            if isinstance(v, (int, float)):
                xs.append(j + i * width)
                ys.append(v)
        if xs:
            ax.bar(xs, ys, width, label=label)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(ones))])
    ax.set_xticklabels([f"{r['model']}\n{r['precision']}" for r in ones], fontsize=8)
    ax.set_ylabel("ms at batch 1 (median GPU time)")
    ax.set_title("latency at batch 1")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def shapes(inspect_path, batch):
    with open(inspect_path) as fh:
        inputs = json.load(fh)["inputs"]
    per = {"min": [], "opt": [], "max": []}
    for inp in inputs:
        shape = inp.get("shape")
        if shape is None:
            raise SystemExit(f"input {inp.get('name')!r} has no known rank; cannot make a profile")
        for which, b in (("min", 1), ("opt", batch), ("max", batch)):
            dims = []
            for i, d in enumerate(shape):
                if isinstance(d, int):
                    dims.append(d)
                elif i == 0:
                    dims.append(b)
                else:
                    raise SystemExit(
                        f"input {inp['name']!r} dimension {i} ({d!r}) is not fixed; only the "
                        "batch dimension may vary here"
                    )
            per[which].append(f"{inp['name']}:{'x'.join(map(str, dims))}")
    return " ".join(f"--{k}-shapes {','.join(v)}" for k, v in per.items())


def main(argv):
    if len(argv) == 3 and argv[0] == "merge":
        raw, out = argv[1], argv[2]
        os.makedirs(out, exist_ok=True)
        merged = merge(raw)
        with open(os.path.join(out, "compare.json"), "w") as fh:
            json.dump(merged, fh, indent=1)
        with open(os.path.join(out, "compare.md"), "w") as fh:
            fh.write(markdown(merged))
        why = plot(merged, os.path.join(out, "compare.png"))
        print(f"compare: {len(merged['rows'])} rows -> {out}/compare.md")
        if why:
            print(f"compare: no compare.png: {why}")
        return 0
    if len(argv) == 3 and argv[0] == "shapes":
        print(shapes(argv[1], int(argv[2])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
