#!/usr/bin/env python3
"""Independent oracle for edgeslim's tests: onnx.checker (full) and ONNX Runtime.

usage: check_model.py MODEL [--reference REF.onnx] [--input-shape NAME=D0,D1,..]... [--seed S]
                            [--input NAME=FILE.npy]... [--save-outputs FILE.npz] [--no-run]

Prints one JSON object: checker result, output shapes, and (with --reference) the max abs
difference of every output between MODEL and REF on the same random inputs, plus the max
|REF| so tests can judge differences relative to the output scale.
"""
import argparse
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def parse_shape(spec):
    name, dims = spec.rsplit("=", 1)
    return name, [int(d) for d in dims.replace("x", ",").split(",")]


def make_inputs(session, shapes, seed):
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in session.get_inputs():
        shape = shapes.get(i.name)
        if shape is None:
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        if "int64" in i.type:
            feeds[i.name] = np.zeros(shape, dtype=np.int64)
        elif "float16" in i.type:
            feeds[i.name] = rng.random(shape, dtype=np.float32).astype(np.float16)
        else:
            feeds[i.name] = rng.random(shape, dtype=np.float32)
    return feeds


def max_abs_diff(a, b):
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def count_float_params(path):
    """Elements of every floating-point tensor in initializers and Constant nodes."""
    m = onnx.load(path)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
              onnx.TensorProto.BFLOAT16}
    total = sum(int(np.prod(t.dims)) for t in m.graph.initializer if t.data_type in floats)
    for n in m.graph.node:
        if n.op_type == "Constant":
            for at in n.attribute:
                if at.name == "value" and at.t.data_type in floats:
                    total += int(np.prod(at.t.dims))
                elif at.name == "value_float":
                    total += 1
                elif at.name == "value_floats":
                    total += len(at.floats)
    return total


def session(path, optimize=True):
    opts = ort.SessionOptions()
    if not optimize:
        # The reference's own math, without ORT's fusions (its Conv+BN fusion rounds in f32).
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--reference")
    ap.add_argument("--input-shape", action="append", default=[])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input", action="append", default=[], help="NAME=FILE.npy")
    ap.add_argument("--no-run", action="store_true", help="checker and parameter count only")
    ap.add_argument("--exact", action="store_true",
                    help="run both models without ORT graph optimisations, so the comparison "
                         "measures the graphs' math, not ORT's own fusions and layouts")
    ap.add_argument("--save-outputs")
    a = ap.parse_args()

    result = {"model": a.model}
    try:
        onnx.checker.check_model(a.model, full_check=True)
        result["checker"] = "ok"
    except Exception as e:  # noqa: BLE001 - report any checker failure to the test
        result["checker"] = f"{type(e).__name__}: {e}".splitlines()[0]

    result["float_params"] = count_float_params(a.model)
    if a.no_run:
        json.dump(result, sys.stdout)
        print()
        return
    shapes = dict(parse_shape(s) for s in a.input_shape)
    sess = session(a.model, optimize=not a.exact)
    feeds = make_inputs(sess, shapes, a.seed)
    for spec in a.input:
        name, path = spec.split("=", 1)
        feeds[name] = np.load(path)
    outs = sess.run(None, feeds)
    result["outputs"] = [
        {"name": o.name, "shape": list(v.shape), "max_abs": float(np.max(np.abs(v))) if v.size else 0.0}
        for o, v in zip(sess.get_outputs(), outs)
    ]
    if a.save_outputs:
        np.savez(a.save_outputs, **{o.name: v for o, v in zip(sess.get_outputs(), outs)})
    if a.reference:
        ref = session(a.reference, optimize=not a.exact)
        ref_outs = ref.run(None, feeds)
        # The reference's own float noise: the same model with ORT's optimisations toggled.
        # A lossless rewrite cannot be held to less than the engine's own rounding changes.
        other = session(a.reference, optimize=a.exact).run(None, feeds)
        result["diffs"] = [
            {
                "name": o.name,
                "max_abs_diff": max_abs_diff(v, r),
                "max_abs_reference": float(np.max(np.abs(r))) if r.size else 0.0,
                "reference_noise": max_abs_diff(n, r),
            }
            for o, v, r, n in zip(sess.get_outputs(), outs, ref_outs, other)
        ]
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
