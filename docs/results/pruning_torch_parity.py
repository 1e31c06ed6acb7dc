"""Pruning parity with Torch-Pruning on torchvision architectures (random init, opset 17).

For each architecture: export the model with PyTorch's standard (TorchScript) exporter, prune
it with Torch-Pruning (DepGraph, MagnitudeImportance p=1, ratio 0.5, the classifier's outputs
ignored) and export that, and prune the raw export with `edgeslim compress prune --ratio 0.5`
(no manual clean-up). Reports parameters (float initializer elements of each ONNX file),
ONNX Runtime p50 at 1 thread (the three models interleaved round-robin), and for edgeslim's
output: onnx.checker (full check) and the largest difference between ONNX Runtime and tract.

Usage: python pruning_torch_parity.py EDGESLIM_BIN_DIR OUT_DIR ARCH...
Needs torch, torchvision, torch-pruning==1.6.1, onnx, onnxruntime (docs/results/
pruning-torch-parity.sh installs them in a virtual environment).
"""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch_pruning as tp
import torchvision


def params(path):
    m = onnx.load(path)
    n = 0
    for t in m.graph.initializer:
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
            n += int(np.prod(t.dims)) if len(t.dims) else 1
    return n


def export(model, path, size):
    x = torch.randn(1, 3, size, size)
    torch.onnx.export(model, (x,), path, opset_version=17, input_names=["x"],
                      output_names=["y"], dynamo=False)


def classifier(model):
    last = None
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            last = m
    return last


def nonzero_classifier(model):
    """torchvision initialises some heads to zero (ViT): every output would be 0 and the
    engine comparisons vacuous, so give such a head small random weights before export."""
    last = classifier(model)
    if last is not None and torch.count_nonzero(last.weight) == 0:
        with torch.no_grad():
            last.weight.normal_(0.0, 0.02)
            if last.bias is not None:
                last.bias.normal_(0.0, 0.02)


def exactness(stdout):
    """The figures of `edgeslim compress prune --verify-exact`'s "exact:" line."""
    m = re.search(r"max \|diff\| ([0-9.e+-]+) \(([0-9.e+-]+) of the largest output", stdout)
    return {"max_abs_diff": float(m.group(1)), "relative": float(m.group(2))} if m else None


def tp_prune(model, size, arch):
    x = torch.randn(1, 3, size, size)
    imp = tp.importance.MagnitudeImportance(p=1)
    kwargs = {}
    if arch.startswith("vit"):
        num_heads = {}
        for m in model.modules():
            if isinstance(m, torch.nn.MultiheadAttention):
                num_heads[m] = m.num_heads
        kwargs = dict(num_heads=num_heads, prune_num_heads=True, prune_head_dims=False,
                      head_pruning_ratio=0.5)
    pruner = tp.pruner.MagnitudePruner(model, x, importance=imp, pruning_ratio=0.5,
                                       ignored_layers=[classifier(model)], **kwargs)
    pruner.step()
    if arch.startswith("vit"):
        for m in model.modules():
            if isinstance(m, torch.nn.MultiheadAttention) and m in pruner.num_heads:
                m.num_heads = pruner.num_heads[m]
                m.embed_dim = m.in_proj_weight.shape[1] if m.in_proj_weight is not None else m.embed_dim
                m.head_dim = m.embed_dim // m.num_heads
    return model


def p50_interleaved(paths, size, runs=20):
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sessions = [ort.InferenceSession(p, so, providers=["CPUExecutionProvider"]) for p in paths]
    for s in sessions:
        for _ in range(2):
            s.run(None, {"x": x})
    times = [[] for _ in sessions]
    for _ in range(runs):
        for i, s in enumerate(sessions):
            t = time.perf_counter()
            s.run(None, {"x": x})
            times[i].append((time.perf_counter() - t) * 1e3)
    return [float(np.median(t)) for t in times]


def tract_vs_ort(bins, path, size, work):
    x = np.random.default_rng(1).standard_normal((1, 3, size, size)).astype(np.float32)
    xin = os.path.join(work, "x.npy")
    yout = os.path.join(work, "y_tract.npy")
    np.save(xin, x)
    subprocess.run([os.path.join(bins, "edgeslim-rt"), "run", path, "--input", xin,
                    "--output", yout, "--top", "0"], check=True, capture_output=True)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = np.load(yout)
    return float(np.max(np.abs(ref - got)) / (np.max(np.abs(ref)) + 1e-12))


def main():
    bins, out = sys.argv[1], sys.argv[2]
    archs = sys.argv[3:]
    os.makedirs(out, exist_ok=True)
    rows = []
    for arch in archs:
        torch.manual_seed(0)
        size = 224
        work = os.path.join(out, arch)
        os.makedirs(work, exist_ok=True)
        row = {"arch": arch}
        try:
            model = getattr(torchvision.models, arch)(weights=None).eval()
            nonzero_classifier(model)
            orig = os.path.join(work, "original.onnx")
            export(model, orig, size)
            t0 = time.time()
            tpp = os.path.join(work, "torch-pruning.onnx")
            try:
                pruned = tp_prune(model, size, arch).eval()
                row["tp_seconds"] = time.time() - t0
                export(pruned, tpp, size)
            except Exception as e:  # Torch-Pruning failing is a row, not the end of it
                row["tp_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                tpp = orig
            ours = os.path.join(work, "edgeslim.onnx")
            t0 = time.time()
            r = subprocess.run([os.path.join(bins, "edgeslim"), "compress", "prune", orig,
                                "--ratio", "0.5", "--verify-exact", "-o", ours],
                               capture_output=True, text=True)
            row["edgeslim_seconds"] = time.time() - t0
            row["params"] = {"original": params(orig), "torch_pruning": params(tpp)}
            if r.returncode != 0:
                row["edgeslim_error"] = (r.stderr.strip().splitlines() or ["?"])[-1]
                lat = p50_interleaved([orig, tpp], size)
                row["ort_p50_ms"] = {"original": lat[0], "torch_pruning": lat[1]}
            else:
                row["edgeslim_summary"] = r.stdout.strip().splitlines()[1:2]
                # pruned == original with the removed channels zeroed, in tract (8 inputs)
                row["exactness"] = exactness(r.stdout)
                row["params"]["edgeslim"] = params(ours)
                onnx.checker.check_model(onnx.load(ours), full_check=True)
                row["checker"] = "ok"
                row["tract_vs_ort_rel"] = tract_vs_ort(bins, ours, size, work)
                lat = p50_interleaved([orig, tpp, ours], size)
                row["ort_p50_ms"] = {"original": lat[0], "torch_pruning": lat[1], "edgeslim": lat[2]}
                if "tp_error" not in row:
                    row["edgeslim_vs_tp_params"] = row["params"]["edgeslim"] / row["params"]["torch_pruning"]
                if arch.startswith("convnext"):
                    # Torch-Pruning prunes channels a LayerNorm normalises over; edgeslim does
                    # only when asked (not exact).
                    ln = os.path.join(work, "edgeslim-ln.onnx")
                    subprocess.run([os.path.join(bins, "edgeslim"), "compress", "prune", orig,
                                    "--ratio", "0.5", "--prune-layernorm", "-o", ln],
                                   check=True, capture_output=True)
                    onnx.checker.check_model(onnx.load(ln), full_check=True)
                    row["params"]["edgeslim_prune_layernorm"] = params(ln)
                    row["tract_vs_ort_rel_prune_layernorm"] = tract_vs_ort(bins, ln, size, work)
                    lat = p50_interleaved([tpp, ln], size)
                    row["ort_p50_ms_prune_layernorm"] = {"torch_pruning": lat[0], "edgeslim": lat[1]}
        except Exception as e:  # one architecture failing must not hide the others
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        print(json.dumps(row), flush=True)
        rows.append(row)
        for f in os.listdir(work):
            if f.endswith(".onnx") or f.endswith(".npy"):
                os.remove(os.path.join(work, f))
    with open(os.path.join(out, "parity.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
