"""Writes the ONNX backend node tests of the installed onnx package as files.

The PyPI wheel defines the node tests as Python cases (model + numpy inputs/outputs) but does
not ship them as files. This script writes each case as

    OUT/<case name>/model.onnx
    OUT/<case name>/test_data_set_<i>/input_<j>.pb, output_<j>.pb

and OUT/index.json (case names, and the ones skipped with the reason), and prints where the
wheel's own file-based suites (simple, pytorch-converted, pytorch-operator) are.

Usage: python gen_node_tests.py OUT
"""

import json
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.case import node as node_cases


def to_proto(value, name):
    """A test value as a TensorProto, or None for sequences/maps/optionals (skipped)."""
    if isinstance(value, onnx.TensorProto):
        p = onnx.TensorProto()
        p.CopyFrom(value)
        p.name = name
        return None if p.data_type == onnx.TensorProto.STRING else p
    if isinstance(value, np.ndarray) or np.isscalar(value):
        arr = np.asarray(value)
        if arr.dtype == object or arr.dtype.kind in ("U", "S"):
            return None
        return numpy_helper.from_array(arr, name)
    return None


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    cases = node_cases.collect_testcases(None)
    written, skipped = [], {}
    for case in cases:
        model = case.model
        inputs = [i.name for i in model.graph.input]
        outputs = [o.name for o in model.graph.output]
        sets = []
        ok = True
        for data_inputs, data_outputs in case.data_sets:
            ins, outs = [], []
            for j, v in enumerate(data_inputs):
                p = to_proto(v, inputs[j] if j < len(inputs) else f"input_{j}")
                if p is None:
                    ok = False
                    break
                ins.append(p)
            for j, v in enumerate(data_outputs):
                p = to_proto(v, outputs[j] if j < len(outputs) else f"output_{j}")
                if p is None:
                    ok = False
                    break
                outs.append(p)
            if not ok:
                break
            sets.append((ins, outs))
        if not ok:
            skipped[case.name] = "sequence, map, optional or string data"
            continue
        d = os.path.join(out, case.name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(model.SerializeToString())
        for i, (ins, outs) in enumerate(sets):
            sd = os.path.join(d, f"test_data_set_{i}")
            os.makedirs(sd, exist_ok=True)
            for j, p in enumerate(ins):
                with open(os.path.join(sd, f"input_{j}.pb"), "wb") as f:
                    f.write(p.SerializeToString())
            for j, p in enumerate(outs):
                with open(os.path.join(sd, f"output_{j}.pb"), "wb") as f:
                    f.write(p.SerializeToString())
        written.append(case.name)
    # The op each test is about: a plain test's model is that op's node; an expanded test
    # (`<plain name>_expanded[_verN]`) decomposes the op of its plain counterpart.
    ops = {}
    models = {c.name: c.model for c in cases}
    for name in written:
        base = name.split("_expanded")[0]
        model = models.get(base) or models[name]
        kinds = [n.op_type for n in model.graph.node]
        named = [k for k in kinds if k != "Constant"] or kinds
        if named:
            ops[name] = named[0]
    data_root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    index = {
        "onnx_version": onnx.__version__,
        "format": 2,
        "node": sorted(written),
        "ops": ops,
        "skipped": skipped,
        "wheel_data": data_root,
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    print(f"wrote {len(written)} node tests to {out} ({len(skipped)} skipped); wheel data at {data_root}")


if __name__ == "__main__":
    main()
