"""The 1000-class classifier: our torch-free checkpoint reader, the ONNX builder, the label table, real tags."""
from __future__ import annotations

import pickle
import struct
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from imgrec.engines.labels import CATEGORIES, COCO, imagenet_classes
from imgrec.models.torch_legacy import MAGIC, PROTOCOL, load_state_dict


def write_legacy_checkpoint(path, state: dict[str, np.ndarray]) -> None:
    """What torch.save(..., _use_new_zipfile_serialization=False) writes, made without torch: a stand-in
    `torch` module gives the pickles the class and function names a real file carries."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    storage_types = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}
    for name in storage_types.values():
        setattr(torch, name, type(name, (), {"__module__": "torch", "__qualname__": name}))

    def _rebuild_tensor_v2(*args):  # never called: only its name is written
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils

    class Storage:
        def __init__(self, key, array):
            self.key, self.array = key, array

    class Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, OrderedDict())

        def __reduce__(self):
            return _rebuild_tensor_v2, self.args

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                kind = getattr(torch, storage_types[obj.array.dtype])
                return ("storage", kind, obj.key, "cpu", obj.array.size)
            return None

    storages, tensors = [], OrderedDict()
    for i, (name, array) in enumerate(state.items()):
        flat = np.ascontiguousarray(array).reshape(-1)
        if array.ndim == 2:  # stored transposed, read through its strides, as torch does for views
            flat = np.ascontiguousarray(array.T).reshape(-1)
            stride = (1, array.shape[0])
        else:
            stride = tuple(int(np.prod(array.shape[d + 1:])) for d in range(array.ndim))
        storage = Storage(str(i), flat)
        storages.append(storage)
        tensors[name] = Tensor(storage, 0, array.shape, stride)
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        with open(path, "wb") as fh:
            for header in (MAGIC, PROTOCOL, {"protocol_version": PROTOCOL, "little_endian": True}):
                pickle.dump(header, fh, protocol=2)
            Writer(fh, protocol=2).dump(tensors)
            pickle.dump([s.key for s in storages], fh, protocol=2)
            for storage in storages:
                fh.write(struct.pack("<q", storage.array.size))
                fh.write(storage.array.tobytes())
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module


def test_the_reader_recovers_arrays_from_a_checkpoint_made_here(tmp_path):
    rng = np.random.default_rng(0)
    state = {"conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
             "fc.weight": rng.normal(size=(5, 7)).astype(np.float32),
             "bn.num_batches_tracked": np.array([12], np.int64)}
    write_legacy_checkpoint(tmp_path / "small.pth", state)
    loaded = load_state_dict(tmp_path / "small.pth")
    assert set(loaded) == set(state)
    for name, array in state.items():
        assert loaded[name].dtype == array.dtype and np.array_equal(loaded[name], array), name


def test_the_reader_refuses_code_in_a_checkpoint(tmp_path):
    with open(tmp_path / "evil.pth", "wb") as fh:
        for header in (MAGIC, PROTOCOL, {"little_endian": True}):
            pickle.dump(header, fh, protocol=2)
        pickle.dump(OrderedDict(x=print), fh, protocol=2)  # a reference to builtins.print: not allowed
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        load_state_dict(tmp_path / "evil.pth")


def test_the_onnx_builder_runs_on_lite0_shaped_weights(tmp_path):
    import onnxruntime as ort

    from imgrec.models.efficientnet import STAGES, build_onnx

    rng = np.random.default_rng(1)
    state: dict[str, np.ndarray] = {}

    def conv(name, out, inp, k, depthwise=False):
        state[f"{name}.weight"] = (rng.normal(size=(out, 1 if depthwise else inp, k, k)) * 0.1).astype(np.float32)

    def bn(name, n):
        state.update({f"{name}.weight": np.ones(n, np.float32), f"{name}.bias": np.zeros(n, np.float32),
                      f"{name}.running_mean": np.zeros(n, np.float32), f"{name}.running_var": np.ones(n, np.float32)})

    conv("_conv_stem", 32, 3, 3)
    bn("_bn0", 32)
    block = 0
    for repeats, k, _stride, expand, c_in, c_out in STAGES:
        for r in range(repeats):
            cin = c_in if r == 0 else c_out
            p = f"_blocks.{block}"
            if expand != 1:
                conv(f"{p}._expand_conv", cin * expand, cin, 1)
                bn(f"{p}._bn0", cin * expand)
            conv(f"{p}._depthwise_conv", cin * expand, cin * expand, k, depthwise=True)
            bn(f"{p}._bn1", cin * expand)
            conv(f"{p}._project_conv", c_out, cin * expand, 1)
            bn(f"{p}._bn2", c_out)
            block += 1
    conv("_conv_head", 1280, 320, 1)
    bn("_bn1", 1280)
    state["_fc.weight"] = (rng.normal(size=(1000, 1280)) * 0.01).astype(np.float32)
    state["_fc.bias"] = np.zeros(1000, np.float32)
    model = build_onnx(state)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits, embedding, gem = session.run(["logits", "embedding", "gem"],
                                         {"input": rng.normal(size=(1, 3, 224, 224)).astype(np.float32)})
    assert logits.shape == (1, 1000) and embedding.shape == gem.shape == (1, 1280) and np.isfinite(logits).all()
    assert np.all(gem >= embedding - 1e-5) and np.any(gem > embedding)  # a cubic mean is at least the mean


def test_the_label_table_is_complete():
    classes = imagenet_classes()
    assert [c.index for c in classes] == list(range(1000))
    assert [c.wnid for c in classes] == sorted(c.wnid for c in classes)
    assert all(c.en and c.zh and c.category in CATEGORIES and c.kind in ("object", "scene") for c in classes)
    assert len({c.en for c in classes}) >= 995  # readable names, nearly all distinct
    coco = {en for en, _, _ in COCO}
    assert all(c.coco in coco for c in classes if c.coco)
    by_name = {c.en: c for c in classes}
    assert (by_name["Golden Retriever"].coco, by_name["tabby cat"].coco, by_name["laptop computer"].coco) == (
        "dog", "cat", "laptop")


def test_real_photos_get_their_imagenet_class_and_the_coco_word():
    from imgrec import schemas
    from imgrec.engines import EngineRegistry
    from imgrec.settings import Settings
    from tests.helpers import encode, photo

    registry = EngineRegistry(Settings())

    def tags(name: str, threshold: float = 30.0) -> dict[str, dict]:
        data = encode(photo(name))
        result = registry.get("image_tagging").run(data, schemas.spec("image_tagging").request(
            {"threshold": threshold, "language": "en"}, image=data)).to_wire()["result"]
        return {t["i18n_tag"]["en"]: t for t in result["tags"]}

    chelsea = tags("chelsea")
    assert "cat" in chelsea and {"tabby cat", "tiger cat", "Egyptian Mau"} & set(chelsea)
    assert len([t for t in chelsea.values() if t["tag"] == "cat"]) == 1  # one "cat", detector and classifier
    assert chelsea["cat"]["instances"]  # the detector's box kept on the merged tag
    coffee = tags("coffee", threshold=20.0)
    assert {"espresso", "cup"} & set(coffee)
    zh = registry.get("image_tagging").run(encode(photo("chelsea")), schemas.spec("image_tagging").request(
        {"threshold": 30.0}, image=encode(photo("chelsea")))).to_wire()["result"]["tags"]
    assert "猫" in {t["tag"] for t in zh}


def _on_a_screen(rgb: np.ndarray) -> np.ndarray:
    """A photo shown on an RGB-stripe display (dark rows between pixel rows, a bezel), then photographed
    slightly turned and from further away, with glare and sensor noise."""
    import cv2

    h, w = rgb.shape[:2]
    up = np.repeat(np.repeat(rgb, 3, axis=0), 3, axis=1).astype(np.float32)
    mask = np.zeros((3 * h, 3 * w, 3), np.float32)
    for c in range(3):
        mask[:, c::3, c] = 1.0
    mask[2::3] *= 0.35
    canvas = np.full((int(3 * h * 1.25), int(3 * w * 1.25), 3), 18, np.float32)
    top, left = (canvas.shape[0] - 3 * h) // 2, (canvas.shape[1] - 3 * w) // 2
    canvas[top:top + 3 * h, left:left + 3 * w] = up * mask * 1.6
    turn = cv2.getRotationMatrix2D((canvas.shape[1] / 2, canvas.shape[0] / 2), 3.0, 0.37)
    shot = cv2.warpAffine(canvas, turn, (int(canvas.shape[1] * 0.4), int(canvas.shape[0] * 0.4)),
                          flags=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:shot.shape[0], 0:shot.shape[1]]
    glare = 40 * np.exp(-((xx - shot.shape[1] * 0.7) ** 2 + (yy - shot.shape[0] * 0.3) ** 2)
                        / (2 * (shot.shape[1] * 0.2) ** 2))
    shot = shot + glare[..., None] + np.random.default_rng(0).normal(0, 3, shot.shape)
    return np.clip(shot, 0, 255).astype(np.uint8)


def test_recapture_says_true_for_genuine_photos_and_rises_for_a_screen():
    from imgrec import schemas
    from imgrec.engines import EngineRegistry
    from imgrec.settings import Settings
    from tests.helpers import encode, photo

    engine = EngineRegistry(Settings()).get("recapture_detect")

    def answer(rgb: np.ndarray) -> dict:
        data = encode(rgb, quality=90)
        return engine.run(data, schemas.spec("recapture_detect").request({}, image=data)).to_wire()["result"]

    for name in ("astronaut", "chelsea", "coffee"):
        genuine = answer(photo(name))
        assert genuine["suggestion"] == "true" and genuine["category"] == "" and float(genuine["score"]) >= 0.95
        screened = answer(_on_a_screen(photo(name)))
        # the head was trained on real phone photos of screens, not on this rendering: it need not call it
        # recaptured, but its probability must move far towards it
        assert float(screened["detail"][0]["confidence"]) > 10 * float(genuine["detail"][0]["confidence"])


def test_the_detectors_presence_probability_follows_its_evidence():
    """The tag confidence (training/calibrate_detector.py's presence model): a probability, higher for a
    stronger best box, and CenterNet finds the cat in scikit-image's chelsea photo as the strongest tag."""
    from skimage import data

    from imgrec.engines.detector import Detection, Evidence, detector, presence

    others = [Detection(0, 0.6, 0, 0, 50, 80)]
    weak, strong = ([Detection(15, score, 10, 10, 200, 150)] for score in (0.25, 0.8))
    photograph = Evidence(3.0, {"cat": 0.5})
    p_weak, p_strong = (presence(g, g + others, 400, 300, photograph) for g in (weak, strong))
    assert 0 <= p_weak < p_strong <= 1
    # the same boxes on a picture the classifier calls no photograph (a chart, a slide), or on a photograph
    # whose classes it gives no belief in a cat, are less likely to hold a cat
    assert presence(strong, strong + others, 400, 300, Evidence(-4.0, {"cat": 0.5})) < p_strong / 2
    assert presence(strong, strong + others, 400, 300, Evidence(3.0, {"cat": 0.0})) < p_strong
    found = detector().detect(data.chelsea())
    assert found and COCO[found[0].class_id][0] == "cat"


def test_centernet_peaks_decode_to_boxes():
    """decode(): a 3 x 3 local maximum of a class's heatmap is a box (its four sides from the cell, in input
    pixels at stride 4); its weaker neighbour and cells below the floor are not."""
    from imgrec.engines.detector import decode

    heat = np.zeros((8, 10, 3), np.float32)
    heat[2, 3, 1], heat[2, 4, 1] = 0.9, 0.5  # a peak and its weaker neighbour, class 1
    heat[6, 8, 2] = 0.3  # another class's peak
    heat[5, 1, 0] = 0.05  # below the floor
    sides = np.zeros((8, 10, 4), np.float32)
    sides[2, 3] = [4, 2, 6, 8]
    boxes, scores, classes = decode(heat, sides, min_score=0.1)
    assert classes.tolist() == [1, 2] and scores.tolist() == pytest.approx([0.9, 0.3])
    assert boxes[0].tolist() == [12 - 4, 8 - 2, 12 + 6, 8 + 8]


def test_a_detector_graph_with_fixed_upsampling_takes_any_input_size(tmp_path):
    """fetch._any_input_size on a small graph built here: NHWC input fixed at 8 x 8, a 2 x upsampling to a
    constant 16 x 16 (as the TF.js converter writes it), a head, and a decoding step to drop. After it the
    graph runs at 16 x 24 with the same numbers a plain 2 x upsampling gives, and ends at the head."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from imgrec.models.fetch import _any_input_size, _fixed_input

    weight = np.random.default_rng(0).normal(size=(2, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["images:0"], ["x"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Shape", ["c"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "two"], ["nc"]),
        helper.make_node("Concat", ["nc", "size"], ["sizes"], axis=0),
        helper.make_node("Resize", ["c", "", "", "sizes"], ["up"], mode="linear",
                         coordinate_transformation_mode="asymmetric"),
        helper.make_node("Transpose", ["up"], ["head:0"], perm=[0, 2, 3, 1]),
        helper.make_node("ReduceMax", ["head:0"], ["decoded"], keepdims=0),
    ]
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([2], np.int64), "two"),
             numpy_helper.from_array(np.array([16, 16], np.int64), "size")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images:0", TensorProto.FLOAT, [1, 8, 8, 3])],
                              [helper.make_tensor_value_info("decoded", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "detector.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert _fixed_input(path)
    _any_input_size(path, ["head:0"])
    assert not _fixed_input(path)
    session = ort.InferenceSession(str(path))
    assert [o.name for o in session.get_outputs()] == ["head:0"]
    x = np.random.default_rng(1).random((1, 16, 24, 3), np.float32)
    head = session.run(None, {"images:0": x})[0]
    conv = np.einsum("nhwc,oc->nhwo", x, weight[:, :, 0, 0])
    assert head.shape == (1, 32, 48, 2)
    assert np.allclose(head[:, ::2, ::2], conv, atol=1e-5)  # asymmetric 2 x: even cells are the input's


def test_pictures_that_are_no_photographs_get_no_coco_object():
    """Slides, scans, coins and logos hold none of COCO's things: the detector still finds an "umbrella" in
    scikit-image's fundus photo, a "clock" in its coins and a "kite" in its logo (99, 95 and 95 with a
    presence model fitted on COCO photos alone); the classifier's photograph head says they are no
    photographs of the everyday world, and the tags drop them. The sample photos stay photographs."""
    from skimage import data

    from imgrec import schemas
    from imgrec.engines import EngineRegistry
    from imgrec.engines.classifier import classifier
    from imgrec.settings import Settings
    from tests.helpers import encode, photo

    registry = EngineRegistry(Settings())
    coco = {en for en, _, _ in COCO}
    model = classifier()
    for name in ("retina", "coins", "logo"):
        rgb = np.asarray(getattr(data, name)())
        rgb = np.ascontiguousarray(np.stack([rgb] * 3, axis=-1) if rgb.ndim == 2 else rgb[..., :3])
        assert model.evidence(model.predict(rgb)).photograph < 0, name
        payload = encode(rgb, "PNG")
        tags = registry.get("image_tagging").run(payload, schemas.spec("image_tagging").request(
            {"language": "en"}, image=payload)).to_wire()["result"]["tags"]
        assert not [t["tag"] for t in tags if t["tag"] in coco], name
    for name in ("astronaut", "chelsea", "coffee"):
        assert model.evidence(model.predict(photo(name))).photograph > 0, name


def test_class_tags_are_tempered_probabilities_and_the_subject_holds_its_parent():
    """A top class at a raw 45% (right three times in four at that level) is tagged above it, the order kept;
    the likeliest breed's parent ("dog") is the photo's subject beside it and ranks first when stronger."""
    from imgrec.engines.analysis import ranked
    from imgrec.engines.classifier import TEMPERATURE, classifier, tempered

    model = classifier()
    names = [c.en for c in model.classes]
    breeds = [i for i, c in enumerate(model.classes) if c.parent_en == "dog"][:3]
    probs = np.full(1000, 0.25 / 997)
    probs[breeds] = [0.45, 0.2, 0.1]
    assert TEMPERATURE < 1
    sharper = tempered(probs, TEMPERATURE)
    assert np.isclose(sharper.sum(), 1) and (np.argsort(-sharper)[:3] == breeds).all()
    assert sharper[breeds[0]] > 0.45 and np.array_equal(tempered(probs, 1.0), probs)
    tags, _ = model.tags(probs, np.zeros(1280, np.float32))
    by_name = {t.en: t for t in tags}
    top = by_name[names[breeds[0]]]
    assert top.confidence > 45 and by_name["dog"].confidence > top.confidence
    assert top.subject and by_name["dog"].subject
    assert not by_name[names[breeds[1]]].subject
    assert [t.en for t in ranked(tags, 30, 2)] == ["dog", top.en]


def test_made_recaptures_carry_the_periodic_artefacts_of_screens_and_prints():
    """training/recaptures.py: a screen's subpixel grid and moire, a print's halftone screen leave sharper
    spectral peaks (recapture_features.py's log max/median of the high-passed luminance and chroma) than the
    genuine copy of the same photo, on average over random parameters."""
    import io
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    import recaptures

    from imgrec.engines.recapture_features import features
    from tests.helpers import photo

    peaks = {kind: [] for kind in recaptures.KINDS}
    for name in ("astronaut", "chelsea", "coffee"):
        for seed in range(2):
            for kind in recaptures.KINDS:
                data = recaptures.make(photo(name), kind, np.random.default_rng(seed))
                made = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                peaks[kind].append(float(features(made)[0:36:2].max()))
    assert np.mean(peaks["screen"]) > np.mean(peaks["genuine"]) + 0.5
    assert np.mean(peaks["print"]) > np.mean(peaks["genuine"]) + 0.5
