"""Quality and one-core latency of every engine, on data no one here wrote (scikit-image's photographs)
and on held-out synthetic sets.

    .venv/bin/python bench/engines.py
"""
from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, pin_one_core, table, timed


def photo(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    return np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]


def jpeg(rgb: np.ndarray, fmt: str = "JPEG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format=fmt)
    return buf.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def run(registry, api: str, data: bytes, **params):
    from imgrec import schemas
    spec = schemas.spec(api)
    inputs = {"url": "https://example.com/x.mp4"} if spec.input == "url_only" else {"image": data}
    return registry.get(api).run(data, spec.request(params, **inputs))


def main() -> None:
    pin_one_core()
    from imgrec.engines import EngineRegistry
    from imgrec.settings import Settings

    rows = []
    work = Path(tempfile.mkdtemp(prefix="imgrec-bench-"))
    gallery = work / "gallery" / "Eileen Collins"
    gallery.mkdir(parents=True)
    (gallery / "portrait.jpg").write_bytes(jpeg(photo("astronaut")[0:300, 100:400]))
    registry = EngineRegistry(Settings(celebrity={"gallery": str(work / "gallery")}))
    registry.analyser.capacity = 0  # time a whole analysis on every call, not the reuse of the last one

    # --- tagging / detection: does the expected label come out at the default-ish threshold?
    expected = {"astronaut": "person", "chelsea": "cat", "coffee": "cup", "camera": "person"}
    hits, lat = 0, []
    for name, label in expected.items():
        ms, result = timed(lambda: run(registry, "image_tagging", jpeg(photo(name)), threshold=25.0), 3)
        lat.append(ms)
        tags = {t.i18n_tag.en for t in result.result.tags}
        hits += label in tags
    ms, rocket = timed(lambda: run(registry, "image_tagging", jpeg(photo("rocket")), threshold=25.0), 3)
    no_false_person = "person" not in {t.i18n_tag.en for t in rocket.result.tags}
    # the classifier's share of a tagging pass, same photos, same run: the pass without it is the figure
    # before the classifier was added
    from imgrec.engines.classifier import classifier

    model = classifier(registry.settings.models_dir)
    cls_ms = float(np.median([timed(lambda: model.candidates(photo(name)), 3)[0] for name in expected]))
    rows.append(["image tagging (CenterNet + classifier + scene)", f"{hits}/4 photos tagged with their subject; "
                 f"rocket: {'no' if no_false_person else 'a false'} person; classifier {cls_ms:.0f} ms of it, "
                 f"{np.median(lat) / (np.median(lat) - cls_ms):.2f} x the pass without it", f"{np.median(lat):.0f}"])

    # --- main object: is the main box the known subject's detector box?
    subjects = {"astronaut": "person", "chelsea": "cat", "camera": "person"}
    agree, lat = 0, []
    for name, label in subjects.items():
        ms, result = timed(lambda: run(registry, "main_object_detection", jpeg(photo(name))), 3)
        lat.append(ms)
        tags = run(registry, "image_tagging", jpeg(photo(name)), threshold=25.0).result.tags
        box = next(t.instances[0].bounding_box for t in tags if t.i18n_tag.en == label)
        main = next(m.location for m in result.result if m.label == "main_object_box")
        agree += abs(main.width - box.width) < 0.1 * box.width and abs(main.top_left_x - box.top_left_x) < 20
    rows.append(["main-object detection", f"{agree}/3 main boxes are the photo's subject", f"{np.median(lat):.0f}"])

    # --- celebrity: the astronaut under changes, and people/animals who are not her
    positives = {"mirrored": photo("astronaut")[:, ::-1], "half size": photo("astronaut")[::2, ::2],
                 "darker": (photo("astronaut") * 0.6).astype(np.uint8), "full photo": photo("astronaut")}
    negatives = {"cameraman": photo("camera"), "cat": photo("chelsea"), "coffee": photo("coffee")}
    correct, lat = 0, []
    for img in positives.values():
        ms, result = timed(lambda: run(registry, "celebrity_recognition", jpeg(img)), 3)
        lat.append(ms)
        correct += [c.label for c in result.result] == ["Eileen Collins"]
    for img in negatives.values():
        correct += run(registry, "celebrity_recognition", jpeg(img)).result == []
    rows.append(["celebrity recognition (BlazeFace + dlib)", f"{correct}/7 correct ({len(positives)} variants of the "
                 f"gallery person, {len(negatives)} others), threshold 0.9", f"{np.median(lat):.0f}"])

    # --- recapture: quality on real recaptures is in bench/quality.py; here its one-core latency
    ms, _ = timed(lambda: run(registry, "recapture_detect", jpeg(photo("coffee"))), 3)
    rows.append(["recapture detection", "real screens and prints: see bench/quality.py", f"{ms:.0f}"])

    # --- super-resolution: PSNR/SSIM vs bicubic on photographs never used in training, degraded as the
    # benchmarks are (MATLAB bicubic); the benchmarks themselves: bench/quality.py
    from skimage.metrics import structural_similarity

    from imgrec.engines.super_resolution import super_resolve

    sys.path.insert(0, str(ROOT / "training"))
    from matlab_resize import imresize, to_uint8

    for model in ("ESPCN", "SRCNN"):
        for scale in (3, 4):
            gains, ssim_gain, lat = [], [], []
            for name in ("astronaut", "chelsea", "coffee"):
                hr = photo(name)
                h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
                hr = hr[:h, :w]
                lr = to_uint8(imresize(hr, 1 / scale))
                ms, sr = timed(lambda: super_resolve(lr, model, scale), 1)
                lat.append(ms)
                bic = to_uint8(imresize(lr, scale))
                b = scale + 2
                crop = lambda a: a[b:-b, b:-b]  # noqa: E731
                gains.append(psnr(crop(sr), crop(hr)) - psnr(crop(bic), crop(hr)))
                ssim_gain.append(structural_similarity(crop(sr), crop(hr), channel_axis=2)
                                 - structural_similarity(crop(bic), crop(hr), channel_axis=2))
            rows.append([f"super-resolution {model} x{scale}", f"PSNR {np.mean(gains):+.2f} dB, SSIM "
                         f"{np.mean(ssim_gain):+.4f} vs bicubic, RGB (mean of 3 photos never trained on)",
                         f"{np.median(lat):.0f}"])

    # --- dark enhance and defog: distance to the clean original
    clean = photo("chelsea")
    dark = (255 * (clean / 255.0) ** 2.2 * 0.5).astype(np.uint8)
    ms, out = timed(lambda: run(registry, "dark_enhance", jpeg(dark, "PNG")), 3)
    enhanced = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(io.BytesIO(out.data)).convert("RGB"))
    rows.append(["low-light enhancement", f"PSNR to the original {psnr(enhanced, clean):.1f} dB (dark input "
                 f"{psnr(dark, clean):.1f} dB)", f"{ms:.0f}"])
    hazy = (clean * 0.55 + 0.45 * 235).astype(np.uint8)
    ms, out = timed(lambda: run(registry, "defog", jpeg(hazy, "PNG")), 3)  # the API's defaults
    clear = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(io.BytesIO(out.data)).convert("RGB"))
    rows.append(["defog", f"PSNR to the original {psnr(clear, clean):.1f} dB (hazy input {psnr(hazy, clean):.1f} dB)",
                 f"{ms:.0f}"])

    # --- background music: clips from the middle, quieter, with noise; and music not in the library
    sys.path.insert(0, str(ROOT))
    from tests.helpers import song, write_media

    library = work / "music"
    library.mkdir()
    for i in range(6):
        write_media(song(100 + i, 30.0), 22050, library / f"track-{i}.m4a", with_video=False)
    bgm = EngineRegistry(Settings(bgm={"library": str(library)})).get("bgm_recognition")
    rng = np.random.default_rng(3)
    results = {}
    lat = []
    for snr in (20, 10, 5, 0):
        ok = 0
        for i in range(6):
            start = int(rng.uniform(3, 20) * 22050)
            clip = song(100 + i, 30.0)[start:start + 8 * 22050] * 0.3
            noisy = clip + rng.normal(0, clip.std() / np.sqrt(10 ** (snr / 10)), len(clip)).astype(np.float32)
            write_media(noisy, 22050, work / "q.mp4")
            data = (work / "q.mp4").read_bytes()
            ms, answer = timed(lambda: bgm.run(data, None), 1)
            lat.append(ms)
            ok += answer.result.audio_name == f"track-{i}"
        results[snr] = ok
    false_hits = 0
    for i in range(6):
        write_media(song(900 + i, 8.0), 22050, work / "u.mp4")
        false_hits += bgm.run((work / "u.mp4").read_bytes(), None).result.audio_name != ""
    rows.append(["background music", "8-s clips, -10 dB volume: " + ", ".join(f"{results[s]}/6 at {s} dB SNR"
                 for s in results) + f"; unknown music matched {false_hits}/6", f"{np.median(lat):.0f}"])

    print(table("Engines: quality and latency per image on one core", ["capability", "quality", "ms/image"], rows))

    # --- a catalog run asks the five analysing APIs about every image: one shared pass vs a pass each
    analysing = ["image_tagging", "media_tagging", "media_tagging_det", "image_tagging_v1", "main_object_detection"]
    photos = [jpeg(photo(name)) for name in ("astronaut", "chelsea", "coffee", "camera")]

    def five_apis(capacity: int) -> float:
        registry.analyser.capacity = capacity
        started = time.perf_counter()
        for data in photos:
            for api in analysing:
                run(registry, api, data)
        return (time.perf_counter() - started) * 1000 / len(photos)

    five_apis(0)  # warm
    each, shared = five_apis(0), five_apis(256)
    print(f"\nfive analysing APIs per photo (tagging v1/v2, media tagging, media tagging det, main object): "
          f"{shared:.0f} ms with one shared analysis pass vs {each:.0f} ms with a pass each = "
          f"{shared / each:.2f} x")


if __name__ == "__main__":
    main()
