#!/usr/bin/env python3
"""Closed-loop load benchmark of an Open Inference Protocol (v2) server with the official Triton
clients: requests/s and latency percentiles over HTTP (binary tensor extension), HTTP JSON and
gRPC, with N concurrent clients.

    python load_bench.py --http 127.0.0.1:8000 --grpc 127.0.0.1:8001 --model resnet50 \
        --shape input:1x3x224x224 --concurrency 64 --processes 8 --requests 20000 --seconds 60 \
        --protocols http,grpc --out result.json

Each client is a thread with its own tritonclient connection that sends its next request as soon
as the last one is answered. Threads are spread over `--processes` worker processes (Python
clients are CPU-bound: one process tops out at a few thousand requests/s, so use several for
fast models, and check the report's `client_cpu_bound` hint). Every protocol gets `--warmup`
requests first (not counted), then runs until `--requests` were sent or `--seconds` passed.

Inputs: `--input NAME=FILE.npy` (repeatable; the array is sent as is, or its rows tiled to
`--batch`), or `--shape NAME:DIMS` for seeded random normal FP32 data. Outputs are requested
in binary (HTTP) / raw (gRPC) form except for `http-json`.

The JSON report (`--out`, also printed): `model`, `concurrency`, `processes`, `batch`, the
client versions, and `runs`, one per protocol: `protocol`, `sent`, `ok`, `errors`,
`error_kinds` ({status: count}), `first_errors`, `seconds`, `requests_per_s`, `items_per_s`,
`latency_ms` {min, mean, p50, p90, p95, p99, max} of successful requests. `sent` = `ok` +
`errors` always; a rejection (HTTP 503 / gRPC UNAVAILABLE) counts as an error of its kind.

Needs tritonclient[http,grpc] and numpy. Runs anywhere the server is reachable.
"""

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import threading
import time

import numpy as np

DTYPES = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float16): "FP16",
    np.dtype(np.float64): "FP64",
    np.dtype(np.int64): "INT64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int8): "INT8",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.bool_): "BOOL",
}


def parse_inputs(args):
    """{name: array} from --input / --shape, rows tiled to --batch when given."""
    inputs = {}
    for spec in args.input:
        name, _, path = spec.partition("=")
        if not path:
            sys.exit(f"--input {spec!r}: expected NAME=FILE.npy")
        inputs[name] = np.load(path)
    rng = np.random.default_rng(args.seed)
    for spec in args.shape:
        name, _, dims = spec.partition(":")
        try:
            shape = [int(d) for d in dims.split("x")]
        except ValueError:
            sys.exit(f"--shape {spec!r}: expected NAME:DIMS such as input:1x3x224x224")
        inputs[name] = rng.standard_normal(shape).astype(np.float32)
    if not inputs:
        sys.exit("give at least one --input NAME=FILE.npy or --shape NAME:DIMS")
    if args.batch:
        for name, a in inputs.items():
            reps = -(-args.batch // a.shape[0])
            inputs[name] = np.concatenate([a] * reps, axis=0)[: args.batch]
    for name, a in inputs.items():
        if a.dtype not in DTYPES:
            sys.exit(f"input {name}: dtype {a.dtype} has no v2 datatype here")
    return inputs


def make_caller(protocol, args, inputs):
    """A function that sends one request and raises on any error."""
    if protocol in ("http", "http-json"):
        import tritonclient.http as httpclient

        binary = protocol == "http"
        client = httpclient.InferenceServerClient(url=args.http, network_timeout=args.timeout_s, connection_timeout=args.timeout_s)
        ins = []
        for name, a in inputs.items():
            i = httpclient.InferInput(name, list(a.shape), DTYPES[a.dtype])
            i.set_data_from_numpy(a, binary_data=binary)
            ins.append(i)
        outs = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in args.outputs] or None

        def call():
            client.infer(args.model, ins, model_version=args.version, outputs=outs)

        return call
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(url=args.grpc)
        ins = []
        for name, a in inputs.items():
            i = grpcclient.InferInput(name, list(a.shape), DTYPES[a.dtype])
            i.set_data_from_numpy(a)
            ins.append(i)
        outs = [grpcclient.InferRequestedOutput(o) for o in args.outputs] or None

        def call():
            client.infer(args.model, ins, model_version=args.version, outputs=outs, client_timeout=args.timeout_s)

        return call
    raise SystemExit(f"unknown protocol {protocol!r} (http, http-json, grpc)")


def error_kind(e):
    status = getattr(e, "status", None)
    if callable(status):
        s = status()
        if s:
            return str(s)
    return type(e).__name__


def worker(protocol, args, threads, quota, ready, go, results):
    """One process: `threads` clients sharing `quota` requests; puts its tallies on `results`.
    Each thread makes its own client (tritonclient's HTTP client is gevent-based and must stay
    on the thread that made it) and warms it up before the start signal."""
    inputs = parse_inputs(args)
    lock = threading.Lock()
    state = {"left": quota, "sent": 0, "deadline": 0.0}
    lat, errors, first = [], {}, []
    warmed = threading.Barrier(threads + 1)
    start = threading.Event()

    def note_error(e):
        k = error_kind(e)
        with lock:
            errors[k] = errors.get(k, 0) + 1
            if len(first) < 5:
                first.append(f"{k}: {e}"[:300])

    def run():
        try:
            call = make_caller(protocol, args, inputs)
            for _ in range(max(1, args.warmup // max(1, args.concurrency))):
                try:
                    call()
                except Exception:
                    pass  # warm-up answers are not counted
        finally:
            warmed.wait()
        start.wait()
        mine = []
        while True:
            with lock:
                if state["left"] <= 0 or time.perf_counter() >= state["deadline"]:
                    break
                state["left"] -= 1
                state["sent"] += 1
            t0 = time.perf_counter()
            try:
                call()
                mine.append(time.perf_counter() - t0)
            except Exception as e:  # every failure is counted, by kind
                note_error(e)
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    warmed.wait()
    ready.put(os.getpid())
    go.wait()
    cpu0 = time.process_time()
    t_start = time.perf_counter()
    state["deadline"] = t_start + args.seconds
    start.set()
    for t in ts:
        t.join()
    t_end = time.perf_counter()
    cpu = time.process_time() - cpu0
    results.put({"sent": state["sent"], "lat": lat, "errors": errors, "first": first, "wall": t_end - t_start, "cpu": cpu})


def run_protocol(protocol, args):
    ctx = mp.get_context("spawn")
    procs = max(1, min(args.processes, args.concurrency))
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    per = [args.concurrency // procs + (1 if k < args.concurrency % procs else 0) for k in range(procs)]
    quotas = [args.requests * n // args.concurrency for n in per]
    quotas[0] += args.requests - sum(quotas)
    ps = [ctx.Process(target=worker, args=(protocol, args, per[k], quotas[k], ready, go, results)) for k in range(procs)]
    for p in ps:
        p.start()
    for _ in ps:
        ready.get(timeout=args.seconds + 600)
    t0 = time.perf_counter()
    go.set()
    parts = [results.get(timeout=args.seconds + 600) for _ in ps]
    wall = time.perf_counter() - t0
    for p in ps:
        p.join()
    lat = np.array([x for part in parts for x in part["lat"]], dtype=np.float64) * 1e3
    errors = {}
    for part in parts:
        for k, v in part["errors"].items():
            errors[k] = errors.get(k, 0) + v
    sent = sum(p["sent"] for p in parts)
    ok = int(lat.size)
    n_err = sum(errors.values())
    assert ok + n_err == sent, f"accounting: {ok} ok + {n_err} errors != {sent} sent"
    pct = lambda q: float(np.percentile(lat, q)) if ok else None  # noqa: E731
    batch = next(iter(parse_inputs(args).values())).shape[0]
    cpu_share = sum(p["cpu"] for p in parts) / max(wall * procs, 1e-9)
    return {
        "protocol": protocol,
        "sent": sent,
        "ok": ok,
        "errors": n_err,
        "error_kinds": errors,
        "first_errors": [e for p in parts for e in p["first"]][:5],
        "seconds": wall,
        "requests_per_s": ok / wall if wall > 0 else 0.0,
        "items_per_s": ok * batch / wall if wall > 0 else 0.0,
        "latency_ms": {
            "min": float(lat.min()) if ok else None,
            "mean": float(lat.mean()) if ok else None,
            "p50": pct(50),
            "p90": pct(90),
            "p95": pct(95),
            "p99": pct(99),
            "max": float(lat.max()) if ok else None,
        },
        "client_cpu_share": cpu_share,
        "client_cpu_bound": cpu_share > 0.9,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--http", default="127.0.0.1:8000")
    p.add_argument("--grpc", default="127.0.0.1:8001")
    p.add_argument("--model", required=True)
    p.add_argument("--version", default="")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    p.add_argument("--shape", action="append", default=[], metavar="NAME:DIMS")
    p.add_argument("--output", dest="outputs", action="append", default=[], metavar="NAME", help="outputs to request (default: all)")
    p.add_argument("--batch", type=int, default=0, help="rows per request (tiles the input rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--requests", type=int, default=1000, help="requests per protocol")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60.0, help="cap per protocol")
    p.add_argument("--timeout-s", type=float, default=60.0)
    p.add_argument("--protocols", default="http,grpc", help="comma list of http, http-json, grpc")
    p.add_argument("--out", help="write the JSON report here too")
    args = p.parse_args()
    if args.concurrency < 1 or args.requests < 1:
        sys.exit("--concurrency and --requests must be at least 1")
    parse_inputs(args)  # fail early on bad input specs
    from importlib import metadata

    try:
        tc_version = metadata.version("tritonclient")
    except metadata.PackageNotFoundError:
        sys.exit("load_bench.py needs tritonclient[http,grpc] (pip install 'tritonclient[http,grpc]')")

    report = {
        "model": args.model,
        "version": args.version,
        "concurrency": args.concurrency,
        "processes": args.processes,
        "batch": next(iter(parse_inputs(args).values())).shape[0],
        "requests_per_protocol": args.requests,
        "seconds_cap": args.seconds,
        "client": {"tritonclient": tc_version, "python": platform.python_version(), "numpy": np.__version__},
        "host": {"machine": platform.machine(), "cpus": os.cpu_count()},
        "runs": [],
    }
    for proto in [x for x in args.protocols.split(",") if x]:
        r = run_protocol(proto, args)
        report["runs"].append(r)
        lm = r["latency_ms"]
        fmt = lambda v: f"{v:.3f}" if v is not None else "-"  # noqa: E731
        print(
            f"{proto:10s} sent {r['sent']:7d} ok {r['ok']:7d} errors {r['errors']:5d}  "
            f"{r['requests_per_s']:9.1f} req/s  p50 {fmt(lm['p50'])} ms  p99 {fmt(lm['p99'])} ms"
            + ("  (client CPU-bound)" if r["client_cpu_bound"] else ""),
            file=sys.stderr,
        )
    text = json.dumps(report, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
