"""Write the seed corpus of the fuzz targets (fuzz/seeds/<target>/): small valid inputs the
fuzzer mutates from. Needs onnx, numpy and Pillow (any environment that has them)."""
import io
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def model(name, nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    put("onnx_loader", name + ".onnx", m.SerializeToString())


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


rng = np.random.default_rng(0)
w = lambda *s: numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), f"w{len(s)}_{s[0]}")

# Convolution, pooling, a classifier head: the attribute classes of the loader's checks.
cw, fw = w(4, 1, 3, 3), w(10, 16)
model("cnn", [
    helper.make_node("Conv", ["x", cw.name], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                     strides=[1, 1], dilations=[1, 1], group=1),
    helper.make_node("Relu", ["c"], ["r"]),
    helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
    helper.make_node("Flatten", ["p"], ["f"], axis=1),
    helper.make_node("Gemm", ["f", fw.name], ["g"], transB=1),
    helper.make_node("Softmax", ["g"], ["y"], axis=-1),
], [f32("x", [1, 1, 4, 4])], [f32("y", [1, 10])], [cw, fw])

# Shape ops and the allocation-budget classes.
starts = numpy_helper.from_array(np.array([0], np.int64), "starts")
ends = numpy_helper.from_array(np.array([4], np.int64), "ends")
axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
steps = numpy_helper.from_array(np.array([2], np.int64), "steps")
reps = numpy_helper.from_array(np.array([1, 2], np.int64), "reps")
shape = numpy_helper.from_array(np.array([2, 3], np.int64), "shape")
model("shapes", [
    helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["s"]),
    helper.make_node("Tile", ["s", "reps"], ["t"]),
    helper.make_node("Transpose", ["t"], ["tt"], perm=[1, 0]),
    helper.make_node("ConstantOfShape", ["shape"], ["k"],
                     value=numpy_helper.from_array(np.array([1.0], np.float32))),
    helper.make_node("Concat", ["tt", "tt"], ["y"], axis=0),
    helper.make_node("ReduceSum", ["k"], ["z"], keepdims=0),
], [f32("x", [2, 4])], [f32("y", [8, 2]), f32("z", [])], [starts, ends, axes, steps, reps, shape])

# BatchNorm and Resize.
bn = [numpy_helper.from_array(v.astype(np.float32), n) for v, n in
      [(np.ones(2), "scale"), (np.zeros(2), "bias"), (np.zeros(2), "mean"), (np.ones(2), "var")]]
sc = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
model("bn_resize", [
    helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["b"],
                     epsilon=1e-5),
    helper.make_node("Resize", ["b", "", "scales"], ["y"], mode="nearest"),
], [f32("x", [1, 2, 3, 3])], [f32("y", [1, 2, 6, 6])], bn + [sc])

for dtype in ("float32", "float64", "int64", "int32", "uint8"):
    b = io.BytesIO()
    np.save(b, (np.arange(12).reshape(3, 4)).astype(dtype))
    put("npy", dtype + ".npy", b.getvalue())

img = Image.fromarray((np.arange(8 * 8 * 3) % 251).astype(np.uint8).reshape(8, 8, 3))
for fmt, ext in (("PNG", "png"), ("JPEG", "jpg")):
    b = io.BytesIO()
    img.save(b, fmt)
    put("image", "rgb8." + ext, b.getvalue())
b = io.BytesIO()
img.convert("L").save(b, "PNG")
put("image", "grey8.png", b.getvalue())

put("http_request", "get", b"\x03\x05\x07\x0b\x01\x02\x10\x04"
    b"GET /state.json HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
put("http_request", "post", b"\x10\x10\x10\x10\x10\x10\x10\x10"
    b"POST /action/init HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"X-Edgeslim: 1\r\nContent-Length: 37\r\n\r\n{\"x\":10,\"y\":10,\"w\":40,\"h\":30}      ")
print("seeds written to", root, file=sys.stderr)
