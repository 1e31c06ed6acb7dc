"""The reliability probe as one script (docs/results/reliability.md, "The probe, re-run").

Builds a corpus of hostile inputs from the real PP-OCR classifier and runs each through the
commands a user runs, classifying every run:

  clean        exit 0 with a correct result, or exit 1 with a one-line error naming the file
  panic        exit 101 (a Rust panic reached the top)
  abort        killed by a signal (SIGABRT from an allocation failure, SIGSEGV, ...)
  hang         still running after the timeout (killed)
  wrong        exit 0 where the result is wrong: a model ONNX Runtime refuses accepted and run
               (bench), a written model that fails onnx.checker or that ONNX Runtime cannot
               load and run (optimize), a NaN/truncated input scored (run)

and the peak RSS of each run (wait4's ru_maxrss). Usage (docs/results/reliability-probe.sh):
  python reliability_probe.py BIN_DIR CLS_MODEL WORK_DIR [TIMEOUT_S]
Needs GNU time (/usr/bin/time) for the peak RSS.
"""
import io
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from PIL import Image

bins, cls_path, work = sys.argv[1], sys.argv[2], sys.argv[3]
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
os.makedirs(work, exist_ok=True)
rng = random.Random(0)
base_bytes = open(cls_path, "rb").read()
base = onnx.load_from_string(base_bytes)
SHAPE = "x=1,3,48,192"


def run(args):
    """(exit code, -signal or 'hang', peak RSS MB, stderr's last line, stdout). The peak RSS is
    GNU time's: wait4 in this process would report the forked copy of this Python process."""
    err, out = os.path.join(work, "stderr.txt"), os.path.join(work, "stdout.txt")
    with open(err, "wb") as ef, open(out, "wb") as of:
        p = subprocess.Popen(["/usr/bin/time", "-f", "probe-rss-kb %M"] + args, stdout=of,
                             stderr=ef, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return "hang", 0.0, "", ""
    lines = open(err, "rb").read().decode("utf-8", "replace").strip().splitlines()
    rss, code = 0.0, p.returncode
    for l in lines:
        if l.startswith("probe-rss-kb "):
            rss = int(l.split()[1]) / 1024
        if l.startswith("Command terminated by signal "):
            code = -int(l.split()[-1])
    lines = [l for l in lines if not l.startswith(("probe-rss-kb ", "Command terminated by signal ",
                                                    "Command exited with non-zero status"))]
    stdout = open(out, "rb").read().decode("utf-8", "replace")
    return code, rss, (lines[-1] if lines else ""), stdout


def ort_loads(path):
    """ONNX Runtime loads and runs the model (NaN weights from overwritten bytes are a valid
    model: both engines answer NaN)."""
    try:
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((1, 3, 48, 192)).astype(np.float32)
        s.run(None, {s.get_inputs()[0].name: x})
        return True
    except Exception:
        return False


def checker_ok(path):
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
        return True
    except Exception:
        return False


# ---- the corpus ----------------------------------------------------------------------------
models = []  # (class, name, bytes)
for i in range(40):  # byte mutants: truncations, flipped bytes, overwritten runs
    b = bytearray(base_bytes)
    kind = i % 4
    if kind == 0:
        b = b[: rng.randrange(1, len(b))]
    elif kind == 1:
        for _ in range(rng.choice([1, 4, 16])):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == 2:
        at, n = rng.randrange(len(b) - 64), rng.randrange(1, 64)
        b[at:at + n] = b"\xff" * n
    else:
        at = rng.randrange(len(b))
        b[at:at] = os.urandom(rng.randrange(1, 32))
    models.append(("bytes", f"bytes{i}", bytes(b)))

values = [-2, -1, 0, 2**31, 2**40]
attr_sites = [(ni, ai) for ni, n in enumerate(base.graph.node) for ai, a in enumerate(n.attribute)
              if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)]
for k in range(100):  # semantic mutants: one integer attribute set to a hostile value
    ni, ai = rng.choice(attr_sites)
    m = onnx.ModelProto()
    m.CopyFrom(base)
    a = m.graph.node[ni].attribute[ai]
    v = rng.choice(values + ["short"])
    if a.type == onnx.AttributeProto.INT:
        a.i = 0 if v == "short" else v
    elif v == "short":
        del a.ints[-1:]
    else:
        a.ints[rng.randrange(len(a.ints))] = v if a.ints else v
    models.append(("attribute", f"attr{k}-{m.graph.node[ni].op_type}-{a.name}={v}", m.SerializeToString()))


def structural(name, edit):
    m = onnx.ModelProto()
    m.CopyFrom(base)
    edit(m)
    models.append(("structure", name, m.SerializeToString()))


def no_outputs(m):
    del m.graph.output[:]


def orphan_output(m):
    m.graph.output[0].name = "nobody_makes_this"


def empty_graph(m):
    del m.graph.node[:]


def string_raw(m):
    tensors = list(m.graph.initializer) + [a.t for n in m.graph.node for a in n.attribute
                                            if a.type == onnx.AttributeProto.TENSOR]
    t = next(t for t in tensors if t.data_type == onnx.TensorProto.FLOAT)
    if not t.raw_data:  # move typed values into raw bytes first
        t.raw_data = np.array(t.float_data, np.float32).tobytes()
        del t.float_data[:]
    t.data_type = onnx.TensorProto.STRING


def huge_const(m):
    shape = numpy_helper.from_array(np.array([20000, 1000000], np.int64), "huge_shape")
    m.graph.initializer.append(shape)
    m.graph.node.append(helper.make_node("ConstantOfShape", ["huge_shape"], ["huge"]))
    m.graph.output.append(helper.make_tensor_value_info("huge", onnx.TensorProto.FLOAT, None))


def huge_tile(m):
    reps = numpy_helper.from_array(np.array([1, 1, 2**31, 1], np.int64), "reps")
    m.graph.initializer.append(reps)
    out = m.graph.output[0].name
    m.graph.node.append(helper.make_node("Tile", [m.graph.input[0].name, "reps"], ["tiled"]))
    m.graph.output.append(helper.make_tensor_value_info("tiled", onnx.TensorProto.FLOAT, None))


def bn_edit(field, value):
    def edit(m):
        for n in m.graph.node:
            if n.op_type == "BatchNormalization":
                if field == "epsilon":
                    for a in n.attribute:
                        if a.name == "epsilon":
                            a.f = value
                    return
                name = n.input[4]
                for i, t in enumerate(m.graph.initializer):
                    if t.name == name:
                        v = numpy_helper.to_array(t).copy()
                        v[0] = value
                        m.graph.initializer[i].CopyFrom(numpy_helper.from_array(v, name))
                        return
    return edit


def softmax_axis(m):
    for n in m.graph.node:
        if n.op_type == "Softmax":
            for a in n.attribute:
                if a.name == "axis":
                    a.i = 100
            if not any(a.name == "axis" for a in n.attribute):
                n.attribute.append(helper.make_attribute("axis", 100))


for name, edit in [("no-outputs", no_outputs), ("orphan-output", orphan_output),
                   ("empty-graph", empty_graph), ("string-raw", string_raw),
                   ("constantofshape-80GB", huge_const), ("tile-2^31", huge_tile),
                   ("bn-negative-var", bn_edit("var", -1.0)),
                   ("bn-nan-eps", bn_edit("epsilon", float("nan"))),
                   ("softmax-axis-100", softmax_axis)]:
    try:
        structural(name, edit)
    except Exception as e:
        print(f"(skipped {name}: {e})", file=sys.stderr)

inputs = []  # (class, name, file name, bytes)


def npy_bytes(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


good = np.random.default_rng(0).standard_normal((1, 3, 48, 192)).astype(np.float32)
nan = good.copy()
nan[0, 0, 0, 0] = np.nan
inf = good.copy()
inf[0, 1, 2, 3] = np.inf
hdr = npy_bytes(good)
inputs += [
    ("npy", "declares-1e10", "big.npy",
     hdr.replace(b"(1, 3, 48, 192)", b"(10000000000,)".ljust(15))),
    ("npy", "nan", "nan.npy", npy_bytes(nan)),
    ("npy", "inf", "inf.npy", npy_bytes(inf)),
    ("npy", "truncated", "trunc.npy", hdr[: len(hdr) // 2]),
    ("npy", "no-magic", "magic.npy", b"NUMPY" + hdr[6:]),
    ("npy", "complex", "complex.npy", npy_bytes(good.astype(np.complex64))),
    ("npy", "wrong-shape", "shape.npy", npy_bytes(good[:, :, :10])),
]
img = Image.fromarray((np.random.default_rng(1).integers(0, 255, (48, 192, 3))).astype(np.uint8))
jb = io.BytesIO()
img.save(jb, "JPEG")
jb = jb.getvalue()
big = io.BytesIO()
Image.new("RGB", (12000, 12000)).save(big, "PNG")  # 432 MB of pixels, a 420 KB file
inputs += [
    ("image", "truncated-jpeg", "trunc.jpg", jb[: len(jb) * 2 // 3]),
    ("image", "png-rgb-12000^2", "huge.png", big.getvalue()),
    ("image", "empty", "empty.png", b""),
    ("image", "garbage", "garbage.jpg", os.urandom(4096)),
]

# ---- runs ----------------------------------------------------------------------------------
results = {}


def keep(name, data):
    """A mutant some command got wrong, kept for a look: WORK/wrong/NAME.onnx."""
    d = os.path.join(work, "wrong")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name.replace("/", "_") + ".onnx"), "wb") as f:
        f.write(data)


def record(command, cls, outcome, rss, name, line):
    r = results.setdefault(command, {"tried": 0, "clean": 0, "panic": 0, "abort": 0, "hang": 0,
                                     "wrong": 0, "max_rss_mb": 0.0, "examples": {}})
    r["tried"] += 1
    r[outcome] += 1
    r["max_rss_mb"] = max(r["max_rss_mb"], round(rss, 1))
    if outcome != "clean":
        r["examples"].setdefault(outcome, []).append(f"{cls}:{name}: {line}"[:200])


def outcome_of(code, ok_if_success):
    if code == "hang":
        return "hang"
    if isinstance(code, int) and code < 0:
        return "abort"
    if code == 101:
        return "panic"
    if code == 0:
        return "clean" if ok_if_success() else "wrong"
    return "clean"


rt, host = os.path.join(bins, "edgeslim-rt"), os.path.join(bins, "edgeslim")
for i, (cls, name, data) in enumerate(models):
    path = os.path.join(work, "m.onnx")
    with open(path, "wb") as f:
        f.write(data)
    ort_ok = None

    def ort_agrees():
        global ort_ok
        if ort_ok is None:
            ort_ok = ort_loads(path)
        return ort_ok

    code, rss, line, _ = run([rt, "bench", path, "--runs", "1", "--input-shape", SHAPE])
    record("edgeslim-rt bench", cls, outcome_of(code, ort_agrees), rss, name, line)
    # inspect is a report: listing a model ONNX Runtime refuses is right when it says what it
    # could not work out ("shapes unknown: <reason>").
    code, rss, line, stdout = run([host, "inspect", path, "--input-shape", SHAPE])
    record("edgeslim inspect", cls,
           outcome_of(code, lambda: ort_agrees() or "shapes unknown" in stdout), rss, name, line)
    out = os.path.join(work, "opt.onnx")
    if os.path.exists(out):
        os.remove(out)
    code, rss, line, _ = run([host, "optimize", path, "-o", out])
    # optimize is right when what it wrote passes the checker and runs in ONNX Runtime (it may
    # repair what ORT refused, e.g. two nodes of one name).
    outcome = outcome_of(code, lambda: checker_ok(out) and ort_loads(out))
    record("edgeslim optimize", cls, outcome, rss, name, line)
    if outcome != "clean":
        keep(name, data)
    print(f"\r{i + 1}/{len(models)} models", end="", file=sys.stderr, flush=True)
print(file=sys.stderr)

for cls, name, fname, data in inputs:
    path = os.path.join(work, fname)
    with open(path, "wb") as f:
        f.write(data)
    # Every one of these must be refused: a success scored a bad input.
    code, rss, line, _ = run([rt, "run", cls_path, "--input", path, "--input-shape", SHAPE])
    record("edgeslim-rt run --input", cls, outcome_of(code, lambda: False), rss, name, line)

print(json.dumps(results, indent=1))
