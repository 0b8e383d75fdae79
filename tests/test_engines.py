"""Engines on photographs no one here wrote (scikit-image) and on images with a known answer."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgrec import schemas
from imgrec.engines import EngineRegistry
from imgrec.settings import Settings
from tests.helpers import encode, photo


@pytest.fixture(scope="module")
def registry(gallery):
    return EngineRegistry(Settings(celebrity={"gallery": gallery}))


def run(registry, api, data: bytes, **params):
    spec = schemas.spec(api)
    return registry.get(api).run(data, spec.request(params, image=data)).to_wire()["result"]


def tags_en(result) -> dict[str, float]:
    return {t["i18n_tag"]["en"]: float(t["confidence"]) for t in result["tags"]}


def test_detector_finds_what_the_photos_show(registry):
    assert "cat" in tags_en(run(registry, "image_tagging", encode(photo("chelsea")), threshold=40.0))
    astronaut = tags_en(run(registry, "image_tagging", encode(photo("astronaut")), threshold=40.0))
    assert {"person", "Face"} <= set(astronaut)
    assert "cup" in tags_en(run(registry, "image_tagging", encode(photo("coffee")), threshold=25.0))
    camera = tags_en(run(registry, "image_tagging", encode(photo("camera")), threshold=60.0))
    assert camera["person"] > 80 and camera["Black and white"] > 90
    assert "person" not in tags_en(run(registry, "image_tagging", encode(photo("rocket")), threshold=20.0))


def test_tagging_respects_threshold_limit_language(registry):
    data = encode(photo("camera"))
    everything = run(registry, "image_tagging", data, threshold=0.0)["tags"]
    limited = run(registry, "image_tagging", data, threshold=0.0, limit=3)["tags"]
    assert [t["tag"] for t in limited] == [t["tag"] for t in everything[:3]]
    from imgrec.engines.scene import COLOURS

    pixel = {en for en, _ in COLOURS.values()} | {"Black and white", "Low light", "Document"}
    kinds = [t["i18n_tag"]["en"] in pixel for t in everything]
    assert kinds == sorted(kinds) and any(kinds)  # what the photo shows first, then the pixel measures
    recognised = [float(t["confidence"]) for t, k in zip(everything, kinds) if not k]
    measures = [float(t["confidence"]) for t, k in zip(everything, kinds) if k]
    # the photo's subject (the classifier's likeliest class) first, then the rest by confidence
    assert recognised[1:] == sorted(recognised[1:], reverse=True) and measures == sorted(measures, reverse=True)
    strict = run(registry, "image_tagging", data, threshold=85.0)["tags"]
    assert strict and all(float(t["confidence"]) >= 85 for t in strict)
    english = run(registry, "image_tagging", data, threshold=80.0, language="en")["tags"]
    assert {t["tag"] for t in english} >= {"person"} and {t["type"] for t in english} >= {"Human"}


def test_boxes_are_in_original_pixels_whatever_the_size(registry):
    small = photo("astronaut")
    big = np.kron(small, np.ones((4, 4, 1), np.uint8))  # 2048 x 2048: decoded reduced, boxes scaled back
    def person_box(data):
        tags = run(registry, "image_tagging", data, threshold=50.0)["tags"]
        return next(t for t in tags if t["i18n_tag"]["en"] == "person")["instances"][0]["bounding_box"]
    a, b = person_box(encode(small)), person_box(encode(big))
    assert abs(b["width"] / 4 - a["width"]) < 0.05 * a["width"]
    assert abs(b["top_left_y"] / 4 - a["top_left_y"]) < 12


def test_media_tagging_det_has_integer_boxes_and_only_located_things(registry):
    result = run(registry, "media_tagging_det", encode(photo("astronaut")))
    assert result["tags"] and all(t["instances"] for t in result["tags"])
    assert all(isinstance(i["bounding_box"]["width"], int) for t in result["tags"] for i in t["instances"])
    assert all("i18n_type" not in t for t in result["tags"])
    media = run(registry, "media_tagging", encode(photo("astronaut")))
    assert all(t["instances"] == [] for t in media["tags"]) and all("i18n_type" in t for t in media["tags"])


def test_v1_tagging_types_and_numbers(registry):
    tags = run(registry, "image_tagging_v1", encode(photo("camera")), threshold=20.0)["tags"]
    assert {t["type"] for t in tags} <= {"object", "scene", "concept"} and isinstance(tags[0]["confidence"], float)


def test_colour_and_light_tags_measure_what_they_say(registry):
    blue = np.zeros((200, 300, 3), np.uint8)
    blue[:] = (20, 60, 220)
    blue[:, 225:] = (230, 230, 230)  # a quarter white
    tags = tags_en(run(registry, "image_tagging", encode(blue, "PNG"), threshold=0.0))
    assert abs(tags["Blue"] - 75) < 3 and abs(tags["White"] - 25) < 3
    dark = (photo("chelsea").astype(np.float32) * 0.1).astype(np.uint8)
    assert tags_en(run(registry, "image_tagging", encode(dark), threshold=0.0))["Low light"] > 70


def test_qr_codes_and_documents(registry):
    import cv2

    qr = cv2.QRCodeEncoder.create().encode("https://example.com/product/42")
    qr = cv2.resize(qr, None, fx=8, fy=8, interpolation=cv2.INTER_NEAREST)
    canvas = np.full((600, 600), 255, np.uint8)
    canvas[50:50 + qr.shape[0], 50:50 + qr.shape[1]] = qr
    tags = tags_en(run(registry, "image_tagging", encode(np.stack([canvas] * 3, -1), "PNG"), threshold=50.0))
    assert tags["QR code"] == 99.0
    # the finder patterns kept, the data scrambled: a detector sees a code no one can read, under the default
    data = canvas[50 + 72:50 + qr.shape[0] - 72, 50 + 72:50 + qr.shape[1] - 72]
    modules = np.random.default_rng(0).integers(0, 2, (data.shape[0] // 8 + 1, data.shape[1] // 8 + 1))
    data[:] = np.kron(modules.astype(np.uint8) * 255, np.ones((8, 8), np.uint8))[:data.shape[0], :data.shape[1]]
    unread = tags_en(run(registry, "image_tagging", encode(np.stack([canvas] * 3, -1), "PNG"), threshold=0.0))
    assert unread["QR code"] < 60
    page = Image.new("RGB", (800, 1000), "white")
    draw = ImageDraw.Draw(page)
    for line in range(30):
        draw.text((60, 40 + line * 30), "Invoice 2026-11 line item %d  quantity 3  price 42.00" % line, fill="black")
    assert tags_en(run(registry, "image_tagging", encode(np.asarray(page)), threshold=20.0))["Document"] > 20
    assert "Document" not in tags_en(run(registry, "image_tagging", encode(photo("chelsea")), threshold=0.0))


def test_main_object_is_the_subject(registry):
    result = run(registry, "main_object_detection", encode(photo("astronaut")))
    main = next(r for r in result if r["label"] == "main_object_box")["location"]
    assert main["height"] > 400 and main["top_left_x"] < 50  # the astronaut, not her face or the flag
    assert {r["label"] for r in result} <= {"main_object_box", "bounding_box"}
    assert run(registry, "main_object_detection", encode(photo("chelsea")), threshold=99.0) == []


def test_celebrity_threshold_and_empty_gallery(registry):
    data = encode(np.ascontiguousarray(photo("astronaut")[:, ::-1]))
    assert run(registry, "celebrity_recognition", data)[0]["label"] == "Eileen Collins"
    assert run(registry, "celebrity_recognition", encode(photo("chelsea")), threshold=0.1) == []
    empty = EngineRegistry(Settings())
    request = schemas.spec("celebrity_recognition").request({}, image=data)
    assert empty.get("celebrity_recognition").run(data, request).result == []


def test_engines_refuse_damaged_input(registry):
    from imgrec.schemas.errors import ApiError

    jpeg = encode(photo("coffee"))
    for api in ("image_tagging", "main_object_detection", "dark_enhance"):
        with pytest.raises(ApiError) as info:
            run(registry, api, jpeg[: len(jpeg) // 4])
        assert info.value.code == "AIS.0503"


def test_bgm_recognises_a_noisy_quiet_clip_from_the_middle(music_library, tmp_path):
    from tests.helpers import song, write_media

    engine = EngineRegistry(Settings(bgm={"library": music_library})).get("bgm_recognition")
    spec = schemas.spec("bgm_recognition")
    request = spec.parse({"url": "https://example.com/clip.mp4"})
    rng = np.random.default_rng(5)
    clip = song(1, 20.0)[22050 * 7:22050 * 15] * 0.25  # 8 s from the middle, 12 dB quieter
    noisy = clip + rng.normal(0, clip.std() / np.sqrt(10 ** 0.5), len(clip)).astype(np.float32)  # 5 dB SNR
    write_media(noisy, 22050, tmp_path / "clip.mp4")
    assert engine.run((tmp_path / "clip.mp4").read_bytes(), request).result.audio_name == "Paper Kites"
    write_media(song(77, 8.0), 22050, tmp_path / "unknown.mp4")
    assert engine.run((tmp_path / "unknown.mp4").read_bytes(), request).result.audio_name == ""
    no_library = EngineRegistry(Settings()).get("bgm_recognition")
    assert no_library.run((tmp_path / "clip.mp4").read_bytes(), request).result.audio_name == ""
    write_media(noisy, 22050, tmp_path / "clip.mkv", fmt="matroska")
    from imgrec.schemas.errors import ApiError
    with pytest.raises(ApiError) as info:
        engine.run((tmp_path / "clip.mkv").read_bytes(), request)
    assert info.value.code == "AIS.0021"


def _tiny_models(folder):
    """A 2-class colour classifier and a one-box YOLOv5-style detector, built as real ONNX graphs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def save(nodes, inits, out_shape, name):
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, None, None])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                                  initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, folder / f"{name}.onnx")

    w = np.array([[10, -10], [-10, 10], [0, 0]], np.float32)  # (R, G, B) means -> (red, green) logits
    save([helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
          helper.make_node("Gemm", ["f", "w", "b"], ["y"])], {"w": w, "b": np.zeros(2, np.float32)}, [1, 2], "clf")
    (folder / "clf.csv").write_text("Red widget,红色部件,home\nGreen widget,绿色部件,home\n")
    # objectness = mean of the red channel; box fixed at the centre of the 640-px input; one class.
    save([helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["r"]),
          helper.make_node("ReduceMean", ["r"], ["m"], keepdims=0),
          helper.make_node("Reshape", ["m", "shape"], ["obj"]),
          helper.make_node("Concat", ["box", "obj", "cls"], ["y"], axis=2)],
         {"s0": np.array([0], np.int64), "s1": np.array([1], np.int64), "ax": np.array([1], np.int64),
          "shape": np.array([1, 1, 1], np.int64), "box": np.array([[[320, 320, 200, 100]]], np.float32),
          "cls": np.array([[[1.0]]], np.float32)}, [1, 1, 6], "yolo")
    (folder / "yolo.csv").write_text("Box,盒子,home\n")


def test_bring_your_own_onnx_models(tmp_path):
    _tiny_models(tmp_path)
    config = tmp_path / "imgrec.toml"
    config.write_text('[models.classifier]\npath = "clf.onnx"\nlabels = "clf.csv"\ninput_size = 32\n'
                      'mean = [0, 0, 0]\nstd = [1, 1, 1]\n\n[models.detector]\npath = "yolo.onnx"\nlabels = "yolo.csv"\n')
    registry = EngineRegistry(Settings.load(config))
    red = np.zeros((640, 640, 3), np.uint8)
    red[..., 0] = 230
    tags = run(registry, "image_tagging", encode(red, "PNG"), threshold=50.0)["tags"]
    by_name = {t["i18n_tag"]["en"]: t for t in tags}
    assert float(by_name["Red widget"]["confidence"]) > 99 and "Green widget" not in by_name
    box = by_name["Box"]["instances"][0]["bounding_box"]
    assert (box["top_left_x"], box["top_left_y"], box["width"], box["height"]) == (220, 270, 200, 100)
    assert abs(float(by_name["Box"]["confidence"]) - 90.2) < 0.5  # objectness = red mean 230/255
    mains = run(registry, "main_object_detection", encode(red, "PNG"))
    assert any(m["location"]["width"] == 200 for m in mains)


ANALYSING = ["image_tagging", "media_tagging", "media_tagging_det", "image_tagging_v1", "main_object_detection"]


def test_one_analysis_pass_per_image_serves_every_tagging_api():
    def answers(registry, order, data):
        return {api: run(registry, api, data, threshold=20.0) for api in order}

    data = encode(photo("astronaut"))
    shared = EngineRegistry(Settings())
    together = answers(shared, ANALYSING, data)
    assert shared.analyser.passes == 1
    alone = {}
    for api in ANALYSING:  # a registry per API: nothing to reuse
        single = EngineRegistry(Settings())
        alone.update(answers(single, [api], data))
        assert single.analyser.passes == 1
    assert together == alone
    # main-object first asks for no pixel tags; the tagging APIs then need a full pass (2), and a later
    # main-object call reuses the full one without changing its answer.
    registry = EngineRegistry(Settings())
    first = run(registry, "main_object_detection", data, threshold=20.0)
    answers(registry, ANALYSING[:4], data)
    assert registry.analyser.passes == 2
    assert run(registry, "main_object_detection", data, threshold=20.0) == first == alone["main_object_detection"]
    assert registry.analyser.passes == 2


def test_analysis_is_shared_by_concurrent_requests_and_failures_are_not_kept():
    from concurrent.futures import ThreadPoolExecutor

    from imgrec.engines.analysis import Analyser
    from imgrec.schemas.common import inspect_image
    from imgrec.schemas.errors import ApiError

    spec = schemas.spec("image_tagging").image
    analyser = Analyser()

    def analyse(target, data):
        return target.analyse(data, inspect_image(data, spec))

    data = encode(photo("chelsea"))
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: analyse(analyser, data), range(6)))
    assert analyser.passes == 1 and all(r is results[0] for r in results)
    truncated = encode(photo("coffee"))[:3000]  # the header is whole, the pixels are not
    for _ in range(2):
        with pytest.raises(ApiError):
            analyse(analyser, truncated)
    assert analyser.passes == 1 and len(analyser._analyses) == 1  # only chelsea's; the failure is not cached
    small = Analyser(capacity=2)
    for name in ("astronaut", "chelsea", "coffee", "astronaut"):
        analyse(small, encode(photo(name)))
    assert small.passes == 4  # astronaut was evicted by the time it came back


def test_recapture_features_are_the_full_sorts_figures():
    """The spectral features use precomputed band bins, one partial sort per band and a float32 FFT: the
    numbers of the plain definition (float64, every bin of the band sorted) to 1e-3, so the trained head
    sees what it was trained on."""
    from imgrec.engines import recapture_features as rf

    def plain(patches):  # the definition, as the head was trained
        feats = np.zeros((len(patches), 2 * (len(rf.BANDS) - 1)), np.float32)
        for k, patch in enumerate(patches):
            power = np.abs(np.fft.fft2((patch - patch.mean()) * rf._WINDOW)) ** 2 + 1e-9
            for b in range(len(rf.BANDS) - 1):
                band = power[(rf._RADIUS >= rf.BANDS[b]) & (rf._RADIUS < rf.BANDS[b + 1])]
                top = np.sort(band)[-max(1, band.size // 500):]
                feats[k, 2 * b], feats[k, 2 * b + 1] = np.log(band.max() / np.median(band)), top.sum() / band.sum()
        return list(feats.max(axis=0))

    for name in ("chelsea", "coffee", "rocket"):
        grey = photo(name).astype(np.float32).mean(axis=2) / 255
        patches = rf._patches(grey - grey.mean())
        np.testing.assert_allclose(rf._spectral(patches), plain(patches), rtol=1e-3)


def test_the_classifier_speaks_against_a_detector_animal_it_contradicts():
    """A confident tarantula is evidence against "bird"; a dog photo is not evidence against "dog"; a
    giraffe (no ImageNet class) is never contradicted."""
    from imgrec.engines.analysis import weaken
    from imgrec.engines.classifier import classifier
    from imgrec.engines.scene import Candidate

    model = classifier(Settings.load().models_dir)
    index = {c.en: c.index for c in model.classes}
    probs = np.zeros(len(model.classes))
    probs[index["tarantula"]] = 0.9
    probs[next(c.index for c in model.classes if c.category != "animal")] = 0.1
    against = model.contradicted(probs)
    assert against["bird"] == pytest.approx(0.1) and "giraffe" not in against
    probs[index["tarantula"]], probs[index["tabby cat"]] = 0.3, 0.6
    assert "cat" not in model.contradicted(probs)  # its own classes hold the belief
    bird = Candidate("bird", "鸟", "animal", "object", 98.0, [(0, 0, 10, 10, 90.0)])
    giraffe = Candidate("giraffe", "长颈鹿", "animal", "object", 95.0)
    weaken([bird, giraffe], against)
    assert (bird.confidence, bird.boxes[0][4], giraffe.confidence) == (9.8, 9.0, 95.0)
