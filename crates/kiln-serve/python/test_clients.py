#!/usr/bin/env python3
"""kiln serve against the official Triton clients (`tritonclient.http`, `tritonclient.grpc`),
which nobody in this project wrote.

Usage (normally started by crates/kiln-serve/tests/clients.rs, which makes the repository,
starts `kiln serve` on free ports and passes the addresses):

    python test_clients.py --http 127.0.0.1:8000 --grpc 127.0.0.1:8001 --metrics 127.0.0.1:8002 \
        --fixtures fixtures --kiln target/debug/kiln --work /tmp/w [--models mlp_legacy,...] \
        [--spare-model mlp_spare --spare-fixture mlp_legacy] [--max-body-bytes N]

The repository must serve every fixture `fixtures/NAME.onnx` as model `NAME`, version 1, on the
CPU backend with a batch dimension up to at least 8. `--spare-model` names a model this script
may unload and load again.

What is checked, through both transports unless said otherwise:
- health (live, ready), server metadata, model metadata (inputs and outputs against
  fixtures/manifest.json), model ready, the repository index;
- inference on every fixture: the committed input against PyTorch's committed output
  (fixtures/NAME_output.npy: computed by PyTorch, not by kiln), over HTTP with the binary
  tensor extension, HTTP JSON, HTTP without requested outputs, gRPC raw contents and gRPC typed
  contents (a hand-made ModelInferRequest);
- random inputs (batch 3 and eight concurrent batch-1 requests, which kiln-batch may merge)
  against `kiln run --backend cpu` (the CLI's reference interpreter, a separate process);
- errors: unknown model or version -> 404 / NOT_FOUND; wrong input name, datatype or shape ->
  400 / INVALID_ARGUMENT with a message naming the input; a binary size that does not match
  -> 400; an oversized body -> 413 (HTTP);
- statistics: the success count grows by exactly the number of requests made; unload / load;
  Prometheus text on the metrics port.

Reference outputs never come from the server itself.
"""

import argparse
import json
import http.client
import os
import re
import subprocess
import sys
import tempfile
import unittest
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

ARGS = None
VERSION = "1"
# PyTorch's CPU kernels sum in another order than kiln's reference: fp32 agreement to ~1e-6
# (the same tolerance as crates/kiln-cli/tests/run.rs).
TORCH_RTOL, TORCH_ATOL = 1e-3, 1e-5
# Server vs `kiln run --backend cpu`: the same interpreter, so much tighter.
CLI_RTOL, CLI_ATOL = 1e-5, 1e-6
ONNX_TO_V2 = {"FLOAT": "FP32", "FLOAT16": "FP16", "DOUBLE": "FP64", "INT64": "INT64", "INT32": "INT32"}


def manifest():
    with open(os.path.join(ARGS.fixtures, "manifest.json")) as f:
        return json.load(f)


def fixture_entries():
    """manifest entries of the models under test, with their model name (the file stem)."""
    out = []
    for m in manifest()["models"]:
        name = os.path.splitext(m["file"])[0]
        if ARGS.models and name not in ARGS.models:
            continue
        out.append((name, m))
    assert out, "no fixture models selected"
    return out


def load_npy(fname):
    return np.load(os.path.join(ARGS.fixtures, fname))


def grpc_ready(client, name, version=""):
    """gRPC ModelReady: false, or NOT_FOUND for a model the server does not know (the protocol
    allows both)."""
    try:
        return client.is_model_ready(name, version)
    except InferenceServerException as e:
        if e.status() == "StatusCode.NOT_FOUND":
            return False
        raise


def http_client():
    return httpclient.InferenceServerClient(url=ARGS.http, concurrency=8, network_timeout=120.0)


def grpc_client():
    return grpcclient.InferenceServerClient(url=ARGS.grpc)


def close_enough(test, got, want, rtol, atol, what):
    test.assertEqual(got.shape, want.shape, f"{what}: shape")
    test.assertEqual(got.dtype, want.dtype, f"{what}: dtype")
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bound = atol + rtol * np.abs(want.astype(np.float64))
    bad = int(np.sum(diff > bound))
    test.assertEqual(bad, 0, f"{what}: {bad} of {want.size} values differ (max abs diff {diff.max():.3g})")


def kiln_cli_reference(model, inputs):
    """Outputs of `kiln run --backend cpu` for `inputs` ({name: array}) as {name: array}."""
    with tempfile.TemporaryDirectory(dir=ARGS.work) as d:
        cmd = [ARGS.kiln, "run", os.path.join(ARGS.fixtures, model + ".onnx"), "--backend", "cpu", "-o", d]
        for name, arr in inputs.items():
            path = os.path.join(d, f"in_{name}.npy")
            np.save(path, arr)
            cmd += ["--input", f"{name}={path}"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr}")
        return {
            f[:-4]: np.load(os.path.join(d, f))
            for f in os.listdir(d)
            if f.endswith(".npy") and not f.startswith("in_") and not f.startswith("input_")
        }


# ---- inference helpers, one per transport / encoding ---------------------------------------


def infer_http(client, model, inputs, outputs, binary_in, binary_out, request_outputs=True):
    ins = []
    for name, arr in inputs.items():
        i = httpclient.InferInput(name, list(arr.shape), "FP32")
        i.set_data_from_numpy(arr, binary_data=binary_in)
        ins.append(i)
    outs = [httpclient.InferRequestedOutput(o, binary_data=binary_out) for o in outputs] if request_outputs else None
    res = client.infer(model, ins, model_version=VERSION, outputs=outs)
    return {o: res.as_numpy(o) for o in outputs}


def infer_grpc(client, model, inputs, outputs):
    ins = []
    for name, arr in inputs.items():
        i = grpcclient.InferInput(name, list(arr.shape), "FP32")
        i.set_data_from_numpy(arr)
        ins.append(i)
    outs = [grpcclient.InferRequestedOutput(o) for o in outputs]
    res = client.infer(model, ins, model_version=VERSION, outputs=outs)
    return {o: res.as_numpy(o) for o in outputs}


def infer_grpc_typed(model, inputs, outputs):
    """A ModelInferRequest built by hand with typed `fp32_contents` instead of raw bytes."""
    import grpc

    req = service_pb2.ModelInferRequest(model_name=model, model_version=VERSION, id="typed-1")
    for name, arr in inputs.items():
        t = req.inputs.add(name=name, datatype="FP32", shape=list(arr.shape))
        t.contents.fp32_contents.extend(arr.reshape(-1).tolist())
    for o in outputs:
        req.outputs.add(name=o)
    with grpc.insecure_channel(ARGS.grpc) as ch:
        resp = service_pb2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=120)
    got = {}
    for k, out in enumerate(resp.outputs):
        if len(resp.raw_output_contents) > k:
            data = np.frombuffer(resp.raw_output_contents[k], dtype=np.float32)
        else:
            data = np.array(out.contents.fp32_contents, dtype=np.float32)
        got[out.name] = data.reshape(list(out.shape))
    assert resp.id == "typed-1", f"response id {resp.id!r} (the request's id must come back)"
    return got


# ---- tests ----------------------------------------------------------------------------------


class Health(unittest.TestCase):
    def test_http(self):
        c = http_client()
        self.assertTrue(c.is_server_live())
        self.assertTrue(c.is_server_ready())
        meta = c.get_server_metadata()
        self.assertIn("name", meta)
        self.assertIn("version", meta)
        self.assertIsInstance(meta.get("extensions", []), list)
        for name, _ in fixture_entries():
            self.assertTrue(c.is_model_ready(name, VERSION), name)
            self.assertTrue(c.is_model_ready(name), name)
        self.assertFalse(c.is_model_ready("no_such_model"))
        self.assertFalse(c.is_model_ready(fixture_entries()[0][0], "99"))

    def test_grpc(self):
        c = grpc_client()
        self.assertTrue(c.is_server_live())
        self.assertTrue(c.is_server_ready())
        meta = c.get_server_metadata()
        self.assertTrue(meta.name)
        self.assertTrue(meta.version)
        for name, _ in fixture_entries():
            self.assertTrue(c.is_model_ready(name, VERSION), name)
        self.assertFalse(grpc_ready(c, "no_such_model"))
        self.assertFalse(grpc_ready(c, fixture_entries()[0][0], "99"))


def expected_tensors(entry, key):
    """[(name, v2 datatype, shape with -1 for symbolic dims)] of a manifest entry."""
    return [
        (t["name"], ONNX_TO_V2[t["dtype"]], [d if isinstance(d, int) else -1 for d in t["shape"]])
        for t in entry[key]
    ]


class Metadata(unittest.TestCase):
    def test_http(self):
        c = http_client()
        for name, m in fixture_entries():
            meta = c.get_model_metadata(name, VERSION)
            self.assertEqual(meta["name"], name)
            self.assertIn(VERSION, meta.get("versions", [VERSION]))
            for key in ("inputs", "outputs"):
                got = [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta[key]]
                self.assertEqual(got, expected_tensors(m, key), f"{name} {key}")

    def test_grpc(self):
        c = grpc_client()
        for name, m in fixture_entries():
            meta = c.get_model_metadata(name, VERSION)
            self.assertEqual(meta.name, name)
            for key in ("inputs", "outputs"):
                got = [(t.name, t.datatype, [int(d) for d in t.shape]) for t in getattr(meta, key)]
                self.assertEqual(got, expected_tensors(m, key), f"{name} {key}")

    def test_repository_index(self):
        names = {m["name"] for m in http_client().get_model_repository_index()}
        for name, _ in fixture_entries():
            self.assertIn(name, names)
        gnames = {m.name for m in grpc_client().get_model_repository_index().models}
        self.assertEqual(names, gnames)


class FixturesAgainstPyTorch(unittest.TestCase):
    """The committed input of every fixture against PyTorch's committed output."""

    def check(self, infer):
        for name, m in fixture_entries():
            inputs = {k: load_npy(f) for k, f in m["input_files"].items()}
            want = {k: load_npy(f) for k, f in m["output_files"].items()}
            got = infer(name, inputs, list(want))
            for o in want:
                close_enough(self, got[o], want[o], TORCH_RTOL, TORCH_ATOL, f"{name}.{o}")

    def test_http_binary(self):
        c = http_client()
        self.check(lambda n, i, o: infer_http(c, n, i, o, True, True))

    def test_http_json(self):
        c = http_client()
        self.check(lambda n, i, o: infer_http(c, n, i, o, False, False))

    def test_http_binary_in_json_out(self):
        c = http_client()
        self.check(lambda n, i, o: infer_http(c, n, i, o, True, False))

    def test_http_no_requested_outputs(self):
        c = http_client()
        self.check(lambda n, i, o: infer_http(c, n, i, o, False, False, request_outputs=False))

    def test_grpc_raw(self):
        c = grpc_client()
        self.check(lambda n, i, o: infer_grpc(c, n, i, o))

    def test_grpc_typed_contents(self):
        self.check(infer_grpc_typed)


class RandomAgainstKilnCli(unittest.TestCase):
    """Random inputs (fixed seed) against `kiln run --backend cpu`, a separate process."""

    def test_batch3_both_transports(self):
        rng = np.random.default_rng(11)
        h, g = http_client(), grpc_client()
        for name, m in fixture_entries():
            inputs = {}
            for t in m["inputs"]:
                shape = [3] + [int(d) for d in t["shape"][1:]]
                inputs[t["name"]] = rng.standard_normal(shape).astype(np.float32)
            want = kiln_cli_reference(name, inputs)
            outs = [t["name"] for t in m["outputs"]]
            self.assertEqual(sorted(want), sorted(outs), "kiln run wrote one .npy per output")
            for label, got in (
                ("http-binary", infer_http(h, name, inputs, outs, True, True)),
                ("http-json", infer_http(h, name, inputs, outs, False, False)),
                ("grpc", infer_grpc(g, name, inputs, outs)),
            ):
                for o in outs:
                    close_enough(self, got[o], want[o], CLI_RTOL, CLI_ATOL, f"{name}.{o} {label}")

    def test_concurrent_rows_stay_apart(self):
        """Eight batch-1 requests at once (kiln-batch may merge them into one batch): each
        answer must be the row of its own request."""
        rng = np.random.default_rng(12)
        for name, m in fixture_entries():
            t = m["inputs"][0]
            rows = rng.standard_normal([8] + [int(d) for d in t["shape"][1:]]).astype(np.float32)
            want = kiln_cli_reference(name, {t["name"]: rows})
            out = m["outputs"][0]["name"]

            # one client per thread: tritonclient's HTTP client is not thread-safe
            def one(k, name=name, t=t, rows=rows, out=out):
                x = {t["name"]: rows[k : k + 1]}
                if k % 2:
                    return infer_grpc(grpc_client(), name, x, [out])[out]
                return infer_http(http_client(), name, x, [out], True, True)[out]

            with ThreadPoolExecutor(8) as pool:
                got = list(pool.map(one, range(8)))
            for k in range(8):
                close_enough(self, got[k], want[out][k : k + 1], CLI_RTOL, CLI_ATOL, f"{name} row {k}")


def first_model():
    name, m = fixture_entries()[0]
    t = m["inputs"][0]
    shape = [2] + [int(d) for d in t["shape"][1:]]
    return name, t["name"], shape, m["outputs"][0]["name"]


class Errors(unittest.TestCase):
    def http_error(self, fn):
        with self.assertRaises(InferenceServerException) as cm:
            fn()
        return cm.exception.status(), cm.exception.message()

    def names_input(self, msg, inp):
        self.assertRegex(msg, r"(^|[^A-Za-z0-9_])" + re.escape(inp) + r"($|[^A-Za-z0-9_])", f"message should name input {inp!r}: {msg}")

    def test_unknown_model_and_version(self):
        name, inp, shape, out = first_model()
        x = {inp: np.ones(shape, np.float32)}
        h, g = http_client(), grpc_client()
        st, _ = self.http_error(lambda: infer_http(h, "no_such_model", x, [out], True, True))
        self.assertEqual(st, "404")
        st, _ = self.http_error(lambda: infer_grpc(g, "no_such_model", x, [out]))
        self.assertEqual(st, "StatusCode.NOT_FOUND")
        st, _ = self.http_error(lambda: h.get_model_metadata("no_such_model"))
        self.assertEqual(st, "404")
        st, _ = self.http_error(lambda: g.get_model_metadata("no_such_model"))
        self.assertEqual(st, "StatusCode.NOT_FOUND")
        # an unknown version of a known model
        i = httpclient.InferInput(inp, shape, "FP32")
        i.set_data_from_numpy(x[inp], binary_data=True)
        st, _ = self.http_error(lambda: h.infer(name, [i], model_version="99"))
        self.assertEqual(st, "404")
        gi = grpcclient.InferInput(inp, shape, "FP32")
        gi.set_data_from_numpy(x[inp])
        st, _ = self.http_error(lambda: g.infer(name, [gi], model_version="99"))
        self.assertEqual(st, "StatusCode.NOT_FOUND")

    def bad_requests(self):
        """(label, inputs as (name, datatype, array), the input the message must name)."""
        name, inp, shape, _ = first_model()
        wrong_last = shape[:-1] + [shape[-1] + 1]
        return name, [
            ("wrong name", [("not_an_input", "FP32", np.ones(shape, np.float32))], "not_an_input"),
            ("wrong dtype", [(inp, "INT32", np.ones(shape, np.int32))], inp),
            ("wrong dtype fp64", [(inp, "FP64", np.ones(shape, np.float64))], inp),
            ("wrong shape", [(inp, "FP32", np.ones(wrong_last, np.float32))], inp),
            ("wrong rank", [(inp, "FP32", np.ones(shape + [1], np.float32))], inp),
            ("missing input", [], inp),
        ]

    def test_bad_inputs_http(self):
        c = http_client()
        name, cases = self.bad_requests()
        for binary in (True, False):
            for label, tensors, named in cases:
                ins = []
                for n, dt, arr in tensors:
                    i = httpclient.InferInput(n, list(arr.shape), dt)
                    i.set_data_from_numpy(arr, binary_data=binary)
                    ins.append(i)
                st, msg = self.http_error(lambda: c.infer(name, ins, model_version=VERSION))
                self.assertEqual(st, "400", f"{label} (binary={binary}): {msg}")
                self.names_input(msg, named)

    def test_bad_inputs_grpc(self):
        c = grpc_client()
        name, cases = self.bad_requests()
        for label, tensors, named in cases:
            ins = []
            for n, dt, arr in tensors:
                i = grpcclient.InferInput(n, list(arr.shape), dt)
                i.set_data_from_numpy(arr)
                ins.append(i)
            st, msg = self.http_error(lambda: c.infer(name, ins, model_version=VERSION))
            self.assertEqual(st, "StatusCode.INVALID_ARGUMENT", f"{label}: {msg}")
            self.names_input(msg, named)

    def raw_post(self, path, body, headers):
        host, port = ARGS.http.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data.decode("utf-8", "replace")

    def test_binary_size_mismatch(self):
        """Binary extension: the header says more bytes than the tensor needs."""
        name, inp, shape, _ = first_model()
        n = int(np.prod(shape))
        header = json.dumps(
            {"inputs": [{"name": inp, "datatype": "FP32", "shape": shape, "parameters": {"binary_data_size": 4 * n + 4}}]}
        ).encode()
        body = header + np.ones(n + 1, np.float32).tobytes()
        st, text = self.raw_post(
            f"/v2/models/{name}/versions/{VERSION}/infer",
            body,
            {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
        )
        self.assertEqual(st, 400, text)
        self.names_input(text, inp)

    def test_malformed_json(self):
        name, *_ = first_model()
        st, text = self.raw_post(f"/v2/models/{name}/infer", b"{not json", {"Content-Type": "application/json"})
        self.assertEqual(st, 400, text)

    def test_oversized_body_http(self):
        """A body over the server's limit -> 413 (and a gRPC message over it ->
        RESOURCE_EXHAUSTED) when --max-body-bytes gives the limit; always: a declared
        Content-Length of 8 GiB (only 1 MiB is sent) -> 413."""
        name, inp, shape, _ = first_model()
        host, port = ARGS.http.rsplit(":", 1)
        if ARGS.max_body_bytes:
            n = ARGS.max_body_bytes // 4 + 1024
            h = http_client()
            i = httpclient.InferInput(inp, [n], "FP32")
            i.set_data_from_numpy(np.ones(n, np.float32), binary_data=True)
            st, msg = self.http_error(lambda: h.infer(name, [i]))
            self.assertEqual(st, "413", msg)
            # gRPC: a message over the same limit is refused by the transport
            g = grpc_client()
            gi = grpcclient.InferInput(inp, [n], "FP32")
            gi.set_data_from_numpy(np.ones(n, np.float32))
            st, msg = self.http_error(lambda: g.infer(name, [gi]))
            # gRPC's status-code guide says RESOURCE_EXHAUSTED; tonic's decoder answers
            # OUT_OF_RANGE ("decoded message length too large"). Either refuses the message.
            self.assertIn(st, ("StatusCode.RESOURCE_EXHAUSTED", "StatusCode.OUT_OF_RANGE"), msg)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.putrequest("POST", f"/v2/models/{name}/infer")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(8 << 30))
        conn.endheaders()
        try:
            conn.send(b"{" + b" " * (1 << 20))
        except OSError:
            pass  # the server may answer and close at once
        r = conn.getresponse()
        r.read()
        conn.close()
        self.assertEqual(r.status, 413)


class StatsRepositoryMetrics(unittest.TestCase):
    def success_count(self, c, name):
        stats = c.get_inference_statistics(name, VERSION)["model_stats"]
        self.assertTrue(stats, f"no statistics for {name}")
        return sum(int(s["inference_stats"]["success"]["count"]) for s in stats)

    def test_statistics_count_exactly(self):
        name, inp, shape, out = first_model()
        c = http_client()
        before = self.success_count(c, name)
        x = {inp: np.random.default_rng(3).standard_normal(shape).astype(np.float32)}
        for _ in range(5):
            infer_http(c, name, x, [out], True, True)
        g = grpc_client()
        for _ in range(4):
            infer_grpc(g, name, x, [out])
        after = self.success_count(c, name)
        self.assertEqual(after - before, 9, "success count grows by exactly the requests made")
        gstats = g.get_inference_statistics(name, VERSION)
        self.assertEqual(sum(s.inference_stats.success.count for s in gstats.model_stats), after)

    def test_unload_and_load(self):
        if not ARGS.spare_model:
            self.skipTest("no --spare-model given")
        name = ARGS.spare_model
        h, g = http_client(), grpc_client()
        self.assertTrue(h.is_model_ready(name))
        h.unload_model(name)
        self.assertFalse(h.is_model_ready(name))
        self.assertFalse(grpc_ready(g, name))
        g.load_model(name)
        self.assertTrue(h.is_model_ready(name))
        g.unload_model(name)
        self.assertFalse(h.is_model_ready(name))
        h.load_model(name)
        self.assertTrue(g.is_model_ready(name))

    def test_metrics_text(self):
        if not ARGS.metrics:
            self.skipTest("no --metrics given")
        with urllib.request.urlopen(f"http://{ARGS.metrics}/metrics", timeout=30) as r:
            self.assertEqual(r.status, 200)
            text = r.read().decode()
        self.assertRegex(text, r"(?m)^# TYPE \S+ (counter|gauge|histogram|summary)")
        samples = [l for l in text.splitlines() if l and not l.startswith("#")]
        self.assertTrue(samples, "metrics text has samples")
        for l in samples:
            self.assertRegex(l, r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+( \d+)?$", f"bad sample line {l!r}")


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--http", required=True, help="HOST:PORT of kiln serve's HTTP listener")
    p.add_argument("--grpc", required=True, help="HOST:PORT of its gRPC listener")
    p.add_argument("--metrics", help="HOST:PORT of its metrics listener")
    p.add_argument("--fixtures", required=True)
    p.add_argument("--kiln", required=True, help="the kiln binary (for `kiln run --backend cpu`)")
    p.add_argument("--work", default=None, help="scratch folder")
    p.add_argument("--models", default="", help="comma-separated model names (default: every fixture)")
    p.add_argument("--spare-model", default=None, help="a model this script may unload and load")
    p.add_argument("--spare-fixture", default="mlp_legacy", help="the fixture the spare model serves")
    p.add_argument("--max-body-bytes", type=int, default=0)
    p.add_argument("unittest_args", nargs="*", help="passed to unittest (e.g. a test name)")
    ARGS = p.parse_args()
    ARGS.models = [m for m in ARGS.models.split(",") if m]
    if ARGS.work is None:
        ARGS.work = tempfile.mkdtemp(prefix="kiln-serve-clients-")
    os.makedirs(ARGS.work, exist_ok=True)
    prog = unittest.main(argv=[sys.argv[0], "-v"] + ARGS.unittest_args, exit=False)
    result = prog.result
    print(f"test_clients: {result.testsRun} tests, {len(result.failures)} failures, {len(result.errors)} errors, {len(result.skipped)} skipped")
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
