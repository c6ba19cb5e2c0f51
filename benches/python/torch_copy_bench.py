#!/usr/bin/env python3
"""PyTorch's host<->device copy bandwidth, for comparison with kiln-cuda's cuda_bench in the
same device call: pinned and pageable H2D / D2H at 256 MiB and D2D, each the median of 20 copies
timed with CUDA events after 3 warm-ups, on random (never zero) data.

Usage: python3 benches/python/torch_copy_bench.py [OUT.json]
"""

import json
import statistics
import sys

import torch

MIB = 1 << 20
SIZE = 256 * MIB


def timed(fn, reps=20, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main():
    n = SIZE // 4
    dev = torch.empty(n, dtype=torch.float32, device="cuda")
    dev2 = torch.empty_like(dev)
    results = {}
    for pinned in (True, False):
        host = torch.rand(n, dtype=torch.float32).pin_memory() if pinned else torch.rand(n, dtype=torch.float32)
        kind = "pinned" if pinned else "pageable"
        ms = timed(lambda: dev.copy_(host, non_blocking=pinned))
        results[f"h2d_{kind}_256MiB_GBps"] = SIZE / ms / 1e6
        ms = timed(lambda: host.copy_(dev, non_blocking=pinned))
        results[f"d2h_{kind}_256MiB_GBps"] = SIZE / ms / 1e6
    dev.uniform_()
    ms = timed(lambda: dev2.copy_(dev))
    results["d2d_256MiB_GBps_bytes_copied"] = SIZE / ms / 1e6
    results["device"] = torch.cuda.get_device_name(0)
    results["torch"] = torch.__version__
    for k, v in results.items():
        print(f"{k:32s} {v:.2f}" if isinstance(v, float) else f"{k:32s} {v}")
    if len(sys.argv) > 1:
        json.dump(results, open(sys.argv[1], "w"), indent=1)


if __name__ == "__main__":
    main()
