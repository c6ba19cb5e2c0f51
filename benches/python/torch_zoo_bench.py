#!/usr/bin/env python3
"""PyTorch eager latency of the zoo models, for comparison with kiln-engine's engine_bench in the
same device call: the same modules as fixtures/export_zoo.py (same seeds, BatchNorm calibrated),
cast to fp16 (or kept fp32), on the GPU, eval mode, no autograd.

For each model and batch: compute-only latency (inputs already on the GPU; CUDA events around
the forward call; median, p90 and min of ITERS runs after WARMUP) and transfer-inclusive latency
(pinned host input copied in, forward, output copied back to pinned host memory, all inside the
events), and compute-only latency with the forward captured in a CUDA graph and replayed.
Throughput is batch / median.

Usage: python3 benches/python/torch_zoo_bench.py [OUT.json] [--models resnet50,bert_base]
       [--batches 1,128] [--dtype fp16|fp32] [--iters N]
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "fixtures"))

import export_zoo  # noqa: E402  (the zoo's model definitions)

WARMUP = 10


def timed(fn, iters):
    for _ in range(WARMUP):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p90_ms": times[min(len(times) - 1, int(0.9 * len(times)))],
        "min_ms": times[0],
        "runs": len(times),
    }


def graphed(fn, iters):
    """`fn` captured once in a CUDA graph (after warm-up on a side stream) and replayed: the
    same compute-only timing as `timed`, without the per-op launch cost. Errors are reported,
    not raised (some models cannot be captured)."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return timed(graph.replay, iters)
    except Exception as e:  # noqa: BLE001 (any capture failure is a result to report)
        return {"error": f"{type(e).__name__}: {e}"}


def inputs_at(name, batch, template, dtype):
    """Random inputs of `batch` shaped like the export's `template` inputs (never zeros)."""
    gen = torch.Generator().manual_seed(7)
    out = {}
    for k, t in template.items():
        shape = (batch,) + tuple(t.shape[1:])
        if t.dtype == torch.int64:
            if k == "input_ids":
                v = torch.randint(1, 30000, shape, generator=gen)
            elif k == "attention_mask":
                v = torch.ones(shape, dtype=torch.int64)
            else:
                v = torch.randint(0, 2, shape, generator=gen)
        else:
            v = torch.randn(shape, generator=gen).to(dtype)
        out[k] = v
    return out


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("out", nargs="?")
    p.add_argument("--models", default="resnet50,bert_base")
    p.add_argument("--batches", default="1,128")
    p.add_argument("--dtype", default="fp16", choices=["fp16", "fp32"])
    p.add_argument("--iters", type=int, default=50)
    a = p.parse_args(argv)
    dtype = torch.float16 if a.dtype == "fp16" else torch.float32
    torch.set_grad_enabled(False)
    torch.backends.cudnn.benchmark = True
    rows = []
    for name in a.models.split(","):
        t0 = time.time()
        model, template, _, _ = export_zoo.make_model(name)
        model = model.to("cuda", dtype).eval()
        setup_s = time.time() - t0
        for batch in (int(b) for b in a.batches.split(",")):
            host = {k: v.pin_memory() for k, v in inputs_at(name, batch, template, dtype).items()}
            dev = {k: v.to("cuda") for k, v in host.items()}
            out = model(*dev.values())
            outs = out if isinstance(out, tuple) else (out,)
            host_out = [torch.empty(o.shape, dtype=o.dtype).pin_memory() for o in outs]
            iters = a.iters if batch > 8 else a.iters * 4

            def compute():
                model(*dev.values())

            def with_transfer():
                d = {k: v.to("cuda", non_blocking=True) for k, v in host.items()}
                r = model(*d.values())
                r = r if isinstance(r, tuple) else (r,)
                for h, o in zip(host_out, r):
                    h.copy_(o, non_blocking=True)

            c = timed(compute, iters)
            t = timed(with_transfer, iters)
            g = graphed(compute, iters)
            row = {
                "model": name,
                "dtype": a.dtype,
                "batch": batch,
                "compute": c,
                "with_transfer": t,
                "cuda_graph": g,
                "throughput_per_s": batch / (c["median_ms"] * 1e-3),
                "setup_s": round(setup_s, 2),
            }
            rows.append(row)
            print(
                f"torch {name:10s} {a.dtype} b{batch:<4d} compute median {c['median_ms']:.3f} ms "
                f"p90 {c['p90_ms']:.3f}  with transfers {t['median_ms']:.3f} ms  "
                f"{row['throughput_per_s']:.0f}/s  "
                + (
                    f"CUDA graph {g['median_ms']:.3f} ms"
                    if "median_ms" in g
                    else f"CUDA graph: {g.get('error')}"
                )
            )
        del model
        torch.cuda.empty_cache()
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "rows": rows,
    }
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
