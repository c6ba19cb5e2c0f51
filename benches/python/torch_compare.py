#!/usr/bin/env python3
"""PyTorch side of `cargo xtask compare`: the zoo models (fixtures/export_zoo.py's modules, same
seeds) timed three ways at each batch and precision, for the same table as `kiln bench`:

- eager: the module's forward call,
- CUDA graph: the forward captured once and replayed (no per-op launch cost),
- torch.compile (default mode): compiled afresh for each batch (dynamo reset first, so the
  batch is specialised as kiln's engine is); the compile time is recorded.

All compute-only: inputs already on the GPU, CUDA events around each call after warm-up, the
median (and p90, min) of many runs: torch_zoo_bench.py's `timed` and `graphed`, reused. A mode
that fails (capture or compile error) is recorded with its error, the others go on.

Usage: python3 benches/python/torch_compare.py OUT.json [--models resnet50,bert_base]
       [--batches 1,8,32,128] [--precisions fp16] [--iters N]
Needs a CUDA GPU and torch, torchvision, transformers (the GPU machine has them).
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch_zoo_bench as zb  # noqa: E402  (timing helpers, inputs, and export_zoo's models)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def compiled_timing(model, dev, iters):
    """torch.compile (default mode) of `model` at these inputs: (stats, compile seconds)."""
    try:
        torch._dynamo.reset()
        fn = torch.compile(model)
        t0 = time.time()
        fn(*dev.values())
        torch.cuda.synchronize()
        compile_s = time.time() - t0
        return zb.timed(lambda: fn(*dev.values()), iters), compile_s
    except Exception as e:  # noqa: BLE001 (a compile failure is a result to report)
        return {"error": f"{type(e).__name__}: {str(e)[:300]}"}, None


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--models", default="resnet50,bert_base")
    p.add_argument("--batches", default="1,8,32,128")
    p.add_argument("--precisions", default="fp16")
    p.add_argument("--iters", type=int, default=100)
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("torch_compare: no CUDA device visible to PyTorch; nothing timed", file=sys.stderr)
        return 1
    torch.set_grad_enabled(False)
    torch.backends.cudnn.benchmark = True
    rows = []
    for name in a.models.split(","):
        for precision in a.precisions.split(","):
            dtype = DTYPES[precision]
            model, template, _, _ = zb.export_zoo.make_model(name)
            model = model.to("cuda", dtype).eval()
            for batch in (int(b) for b in a.batches.split(",")):
                host = zb.inputs_at(name, batch, template, dtype)
                dev = {k: v.to("cuda") for k, v in host.items()}
                iters = a.iters if batch > 8 else a.iters * 4

                def eager():
                    model(*dev.values())

                e = zb.timed(eager, iters)
                g = zb.graphed(eager, iters)
                c, compile_s = compiled_timing(model, dev, iters)
                row = {
                    "model": name,
                    "precision": precision,
                    "batch": batch,
                    "eager": e,
                    "cuda_graph": g,
                    "compile": c,
                    "compile_s": compile_s,
                }
                rows.append(row)
                line = f"torch {name:10s} {precision} b{batch:<4d}"
                for mode in ("eager", "cuda_graph", "compile"):
                    s = row[mode]
                    line += (
                        f"  {mode} {s['median_ms']:.3f} ms"
                        if "median_ms" in s
                        else f"  {mode}: {s.get('error')}"
                    )
                print(line, flush=True)
            del model
            torch.cuda.empty_cache()
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "rows": rows,
    }
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
