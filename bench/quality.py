"""Recognition quality on real labelled photos, next to the published figures.

    .venv/bin/python bench/quality.py [--data ../shared/eval] [--limit N]

Every figure goes through the engines exactly as the APIs answer (in-process, the default parameters
unless a figure says otherwise), on the development splits of `../shared/eval/` (see its README):
- coco-dev (128 COCO photos with boxes): media-tagging-det mAP@0.5 (threshold 1, limit 50; COCO-style
  101-point interpolated AP, mean over the classes present); image tagging v2 at its default threshold:
  precision and recall of the COCO class names it tags against those present (a tag counts when its
  English name equals the COCO name).
- imagenet-dev (200 photos, one per class): the photo's class among the v2 tags at threshold 30 (the tag's
  English name equals the class's name in our label table, or the file's own WordNet name).
- scene-dev (240 outdoor photos, six scenes): a v2 tag naming the scene or an obvious synonym.
- recapture: the share of genuine photos (imagenet-dev, coco-dev, NUAA live faces) answered "true", and of
  screen photos and printed faces answered something else, at the default threshold 0.95. The scene and
  recapture heads are trained on these very photos, so those figures are cross-validated: each photo is
  judged by a head fitted without it (and without its NUAA subject). Screens showing natural photos and
  genuine phone photos (recapture-dev/screen-natural, genuine-phone) are judged by the shipped head, which
  never saw them, per source.
- one-core latency of image tagging v2 per photo (median over the COCO photos).
Image restoration (`--only restoration`), each next to the published figures on the same protocol:
- sr/set5, sr/set14 (the benchmarks' own MATLAB-made low-resolution files): super-resolution x3 and x4, ESPCN
  and SRCNN, Y-channel PSNR/SSIM (BT.601 Y rounded to 8 bits, border shaved by the scale), against MATLAB
  bicubic; and a check that training/matlab_resize.py reproduces the benchmark's degradation (bicubic PSNR
  from our low-resolution images vs theirs).
- lol-dev (30 LOL pairs): low-light enhancement at the default brightness, RGB PSNR and SSIM. The shipped
  network was trained on these pairs: its honest figure is the cross-validated one that
  training/train_low_light.py --folds 5 prints (each fold's network never saw its photos).
- haze-dev (12 SOTS-indoor pairs): defog at the default gamma and natural_look, RGB PSNR and SSIM.
- per-megapixel time of each on one core.
Near-duplicates (`--only similar`): copies of the eval photos found as two runs would (bench/near_duplicates.py).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imgrec.engines.imaging import iou  # noqa: E402
# bench/no_coco.py encodes with bench/engines.py, whose `common` is bench/common.py: imported while bench/ leads
# the path (the figures below put training/, which has its own `common`, before it)
import no_coco  # noqa: E402,F401
from engines import jpeg  # noqa: E402,F401

SCENE_SYNONYMS = {
    "buildings": {"buildings", "building", "palace", "church", "monastery", "mosque", "castle", "library", "dome",
                  "bell tower", "triumphal arch", "prison", "planetarium", "cinema", "boathouse"},
    "forest": {"forest", "woods", "tree"},
    "glacier": {"glacier", "ice", "snow"},
    "mountain": {"mountain", "valley", "volcano", "cliff", "alp"},
    "sea": {"sea", "beach", "lakeshore", "sandbar", "promontory", "coral reef", "ocean"},
    "street": {"street", "road"},
}


def coco_names(data: Path) -> list[str]:
    names = {}
    for line in (data / "coco-dev" / "names.yaml").read_text().splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key.strip().isdigit():
            names[int(key)] = value.strip().strip("'\"")
    return [names[i] for i in sorted(names)]


def ap101(scores: list[float], hits: list[bool], positives: int) -> float:
    if positives == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores)) if scores else np.array([], int)
    tp = np.cumsum(np.asarray(hits, float)[order]) if scores else np.array([])
    fp = np.cumsum(1 - np.asarray(hits, float)[order]) if scores else np.array([])
    recall = tp / positives if scores else np.array([])
    precision = tp / np.maximum(tp + fp, 1e-9) if scores else np.array([])
    for i in range(len(precision) - 2, -1, -1):  # the precision envelope
        precision[i] = max(precision[i], precision[i + 1])
    total = 0.0
    for r in np.linspace(0, 1, 101):
        idx = np.searchsorted(recall, r, side="left")
        total += precision[idx] if idx < len(precision) else 0.0
    return total / 101


class Engines:
    def __init__(self):
        from imgrec.engines import EngineRegistry
        from imgrec.settings import Settings

        self.registry = EngineRegistry(Settings.load())

    def run(self, api: str, data: bytes, **params):
        from imgrec import schemas

        return self.registry.get(api).run(data, schemas.spec(api).request(params, image=data)).to_wire()["result"]


def coco_figures(engines: Engines, data: Path, limit: int | None) -> dict:
    """The detector's calibration was fitted on these photos (and on drawn pictures): each photo is scored
    with a calibration fitted on the other four folds (as training/calibrate_detector.py splits them)."""
    from PIL import Image

    sys.path.insert(0, str(ROOT / "training"))
    import calibrate_detector as training

    from imgrec.engines import detector as detector_module

    raw_scores, in_photo, photo_of, features, from_coco = training.candidates(data)  # coco-dev's photos first
    fold_of_photo = np.random.default_rng(0).permutation(photo_of.max() + 1) % 5
    shipped = detector_module._calibration
    names = coco_names(data)
    images = sorted((data / "coco-dev" / "images").glob("*.jpg"))[:limit]
    detections = defaultdict(list)  # class -> [(score, image index, box)]
    truth = defaultdict(list)  # (image index, class) -> [box]
    tp = fp = fn = 0
    latencies = []
    for i, path in enumerate(images):
        train = fold_of_photo[photo_of] != fold_of_photo[i]
        fitted = training.fit(raw_scores[train], in_photo[train], features[train], from_coco[train])
        detector_module._calibration = lambda fitted=fitted: fitted
        payload = path.read_bytes()
        width, height = Image.open(path).size
        label_file = data / "coco-dev" / "labels" / f"{path.stem}.txt"
        present = set()
        for line in (label_file.read_text().splitlines() if label_file.exists() else []):
            cls, cx, cy, w, h = line.split()[:5]
            name = names[int(cls)]
            present.add(name)
            truth[(i, name)].append(((float(cx) - float(w) / 2) * width, (float(cy) - float(h) / 2) * height,
                                     float(w) * width, float(h) * height))
        for tag in engines.run("media_tagging_det", payload, threshold=1.0, limit=50, language="en")["tags"]:
            for inst in tag.get("instances", []):
                b = inst["bounding_box"]
                detections[tag["tag"]].append((float(inst["confidence"]), i, (b["top_left_x"], b["top_left_y"],
                                                                             b["width"], b["height"])))
        started = time.perf_counter()
        tags = engines.run("image_tagging", payload, language="en")["tags"]
        latencies.append((time.perf_counter() - started) * 1000)
        tagged = {t["i18n_tag"]["en"] for t in tags} & set(names)
        tp += len(tagged & present)
        fp += len(tagged - present)
        fn += len(present - tagged)
    detector_module._calibration = shipped
    aps = {}
    for name in names:
        positives = sum(len(v) for (img, n), v in truth.items() if n == name)
        if not positives:
            continue
        used: set[tuple[int, int]] = set()
        scores, hits = [], []
        for score, img, box in sorted(detections.get(name, []), key=lambda d: -d[0]):
            gts = truth.get((img, name), [])
            best, best_j = 0.0, -1
            for j, gt in enumerate(gts):
                overlap = iou(box, gt)
                if overlap > best and (img, j) not in used:
                    best, best_j = overlap, j
            hit = best >= 0.5
            if hit:
                used.add((img, best_j))
            scores.append(score)
            hits.append(hit)
        aps[name] = ap101(scores, hits, positives)
    return {"images": len(images), "map50": 100 * float(np.mean(list(aps.values()))),
            "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "latency_ms": latencies}


def imagenet_figure(engines: Engines, data: Path, limit: int | None) -> tuple[float, float, int]:
    """(the class among the v2 tags at threshold 30, the first v2 tag at the default threshold naming the
    class, its parent or its COCO word, photos). The classifier's temperature is fitted on these photos
    (training/fit_classifier_temperature.py), so each photo is judged with one fitted without its fold."""
    sys.path.insert(0, str(ROOT / "training"))
    import fit_classifier_temperature as temperature

    from imgrec.engines.classifier import classifier
    from imgrec.engines.labels import imagenet_classes

    by_wnid = {c.wnid: c for c in imagenet_classes()}
    files = temperature.imagenet_photos(data)[:limit]
    probs, truth = temperature.probabilities(files)
    split = temperature.folds(len(files))
    model = classifier()
    shipped = model.temperature
    hits = firsts = 0
    for path, fold in zip(files, split):
        model.temperature = temperature.fit_temperature(probs[split != fold], truth[split != fold])
        wnid, _, lemma = path.stem.partition("_")
        known = by_wnid[wnid]
        wanted = {known.en.lower(), lemma.replace("_", " ").lower()}
        answer = engines.run("image_tagging", path.read_bytes(), threshold=30.0, language="en")["tags"]
        hits += bool({t["i18n_tag"]["en"].lower() for t in answer} & wanted)
        first = [t["i18n_tag"]["en"].lower() for t in answer if float(t["confidence"]) >= 60]
        firsts += bool(first) and first[0] in wanted | {w.lower() for w in (known.parent_en, known.coco) if w}
    model.temperature = shipped
    return hits / max(len(files), 1), firsts / max(len(files), 1), len(files)


def scene_figure(engines: Engines, data: Path, limit: int | None) -> tuple[float, int, dict[str, float], float]:
    """Cross-validated: the shipped scene head was trained on these photos, so each fold's photos are tagged
    by a head trained on the other four folds (swapped into the engine), as training/train_scene_head.py
    splits them. Also the share of the object photos (imagenet-dev) that got a scene tag anyway."""
    sys.path.insert(0, str(ROOT / "training"))
    import train_scene_head as training

    from imgrec.engines.classifier import classifier

    model = classifier(engines.registry.settings.models_dir)
    shipped = model.scene
    files, y = training.dataset(data)
    x_raw = training.embeddings(files)
    fold_of = training.folds(len(y))
    scenes = list(training.SCENES)
    hits, seen, stray, others = defaultdict(int), defaultdict(int), 0, 0
    try:
        for k in range(5):
            model.scene = training.head(x_raw[fold_of != k], y[fold_of != k])
            for index in np.nonzero(fold_of == k)[0]:
                if limit is not None and seen[int(y[index])] >= limit:
                    continue
                tags = {t["i18n_tag"]["en"].lower() for t in engines.run("image_tagging", files[index].read_bytes(),
                                                                          language="en")["tags"]}
                seen[int(y[index])] += 1
                if y[index] < len(scenes):
                    hits[int(y[index])] += bool(tags & SCENE_SYNONYMS[scenes[y[index]]])
                else:
                    others += 1
                    stray += bool(tags & set(training.SCENES))
    finally:
        model.scene = shipped
    per_scene = {scene: hits[i] / max(seen[i], 1) for i, scene in enumerate(scenes)}
    total = sum(seen[i] for i in range(len(scenes)))
    return sum(hits.values()) / max(total, 1), total, per_scene, stray / max(others, 1)


def recapture_figures(engines: Engines, data: Path, limit: int | None) -> dict[str, tuple[float, int]]:
    """Cross-validated like the scene figure: the shipped head was trained on these photos, so each outer
    fold's photos are judged by the engine with a head (and its calibration) fitted on the other folds,
    folds grouped by NUAA subject, as training/train_recapture_head.py splits them."""
    sys.path.insert(0, str(ROOT / "training"))
    import train_recapture_head as training

    engine = engines.registry.get("recapture_detect")
    shipped = (engine.weight, engine.bias, engine.mean, engine.scale)
    files, y, groups, origin = training.dataset(data)
    x_raw = training.features_of(files)
    fold_of = training.group_folds(groups)
    right: dict[str, list[bool]] = defaultdict(list)
    try:
        for k in range(5):
            train = fold_of != k
            (w, b, mean, scale), (a, c) = training.calibrated(x_raw[train], y[train], groups[train], 0.05)
            engine.weight, engine.bias, engine.mean, engine.scale = a * w, a * b + c, mean, scale
            for index in np.nonzero(fold_of == k)[0]:
                if limit is not None and len(right[origin[index]]) >= limit:
                    continue
                suggestion = engines.run("recapture_detect", files[index].read_bytes())["suggestion"]
                right[origin[index]].append((suggestion == "true") == (y[index] == 0))
    finally:
        engine.weight, engine.bias, engine.mean, engine.scale = shipped
    names = {"imagenet-dev": "genuine: imagenet-dev 'true'", "coco-dev": "genuine: coco-dev 'true'",
             "live-face": "genuine: live faces 'true'", "screen": "screens not 'true'",
             "print-face": "printed faces not 'true'"}
    figures = {names[k]: (float(np.mean(v)), len(v)) for k, v in right.items()}
    # Photos the shipped head never saw (training/train_recapture_head.py does not read them): screens showing
    # natural photos and genuine phone photos, per source (natural-sources.csv; the file name's prefix)
    for folder, label, recaptured in (("screen-natural", "natural-photo screens not 'true'", True),
                                      ("genuine-phone", "genuine phone photos 'true'", False)):
        by_source: dict[str, list[bool]] = defaultdict(list)
        for path in sorted((data / "recapture-dev" / folder).glob("*.*"))[:limit]:
            suggestion = engines.run("recapture_detect", path.read_bytes())["suggestion"]
            by_source[path.name.split("__")[0]].append((suggestion != "true") == recaptured)
        for source, right_ones in sorted(by_source.items()):
            figures[f"{label}, {source} (never trained on)"] = (float(np.mean(right_ones)), len(right_ones))
    return figures


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def luminance8(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y of 8-bit RGB, rounded to 8 bits, as MATLAB's rgb2ycbcr gives it."""
    x = rgb.astype(np.float64)
    return np.round(16 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, L 255); colour: channel mean."""
    import cv2

    if a.ndim == 3:
        return float(np.mean([ssim(a[..., c], b[..., c]) for c in range(a.shape[2])]))
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5)[5:-5, 5:-5]  # valid window positions only

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    return float(np.mean((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))))


def timed_per_megapixel(fn, rgb: np.ndarray) -> tuple[np.ndarray, float]:
    started = time.process_time()
    out = fn(rgb)
    return out, (time.process_time() - started) * 1000 / (rgb.shape[0] * rgb.shape[1] / 1e6)


def sr_figures(data: Path) -> list[tuple[str, str, str, str]]:
    sys.path.insert(0, str(ROOT / "training"))
    from matlab_resize import imresize, to_uint8

    from imgrec.engines.super_resolution import rgb_to_ycbcr, upscale_y

    published = {("set5", 3): (30.39, 32.75, 33.13), ("set14", 3): (27.54, 29.30, 29.49),
                 ("set5", 4): (28.42, 30.48, 30.90)}
    rows, per_mp = [], defaultdict(list)
    for bench in ("set5", "set14"):
        for scale in (3, 4):
            figures = defaultdict(list)
            for hr_path in sorted((data / "sr" / bench).glob(f"*_SRF_{scale}_HR.png")):
                hr = load_rgb(hr_path)
                lr = load_rgb(hr_path.with_name(hr_path.name.replace("_HR", "_LR")))
                shave = (slice(scale, -scale), slice(scale, -scale))
                truth = luminance8(hr)[shave]

                def score(name: str, y: np.ndarray) -> None:
                    figures[name].append((psnr(y[shave], truth), ssim(y[shave], truth)))

                score("bicubic", luminance8(to_uint8(imresize(lr, scale))[:hr.shape[0], :hr.shape[1]]))
                ours = to_uint8(imresize(to_uint8(imresize(hr, 1 / scale)), scale))[:hr.shape[0], :hr.shape[1]]
                score("bicubic from our degradation", luminance8(ours))
                y = rgb_to_ycbcr(lr)[..., 0]
                for model in ("ESPCN", "SRCNN"):
                    out, ms = timed_per_megapixel(lambda rgb: upscale_y(y, model, scale), lr)
                    per_mp[model].append(ms / scale ** 2)  # per output megapixel
                    score(model, np.round(out[:hr.shape[0], :hr.shape[1]] * 255))
            mean = {k: np.mean(v, axis=0) for k, v in figures.items()}
            paper = published.get((bench, scale))
            for name, (p, s) in mean.items():
                if name == "bicubic from our degradation":
                    rows.append((f"sr/{bench}", f"x{scale} degradation check: bicubic PSNR, our LR vs theirs",
                                 f"{p - mean['bicubic'][0]:+.2f}", "within +-0.1 dB"))
                    continue
                gain = "" if name == "bicubic" else f", {p - mean['bicubic'][0]:+.2f} dB over bicubic"
                ref = ""
                if paper:
                    ref = f"paper {dict(zip(('bicubic', 'SRCNN', 'ESPCN'), paper))[name]:.2f}"
                rows.append((f"sr/{bench}", f"x{scale} {name} Y-PSNR / SSIM{gain}", f"{p:.3f}/{s:.4f}", ref))
    for model, values in per_mp.items():
        rows.append(("sr", f"{model} time per output megapixel, one core (mean)", f"{np.mean(values):.0f} ms", ""))
    return rows


def restoration_pair_figures(name: str, pairs: list[tuple[Path, Path]], fn, reference: str):
    scores, per_mp = [], []
    for degraded, clean in pairs:
        out, ms = timed_per_megapixel(fn, load_rgb(degraded))
        truth = load_rgb(clean)
        scores.append((psnr(out, truth), ssim(out, truth)))
        per_mp.append(ms)
    p, s = np.mean(scores, axis=0)
    return [(name.split()[0], f"{name}, {len(pairs)} pairs: RGB PSNR / SSIM", f"{p:.2f}/{s:.3f}", reference),
            (name.split()[0], "time per megapixel, one core (mean)", f"{np.mean(per_mp):.0f} ms", "")]


def restoration_figures(data: Path) -> list[tuple[str, str, str, str]]:
    from imgrec import schemas
    from imgrec.engines.dark_enhance import enhance
    from imgrec.engines.defog import defog

    rows = sr_figures(data)
    brightness = schemas.spec("dark_enhance").resolve_params({})["brightness"]
    lol = [(p, data / "lol-dev" / "high" / p.name) for p in sorted((data / "lol-dev" / "low").glob("*.png"))]
    rows += restoration_pair_figures(
        f"lol-dev low-light, brightness {brightness}", lol, lambda rgb: enhance(rgb, brightness),
        "the network saw these pairs: the goal (>= 18 dB) is for training/train_low_light.py --folds 5's "
        "cross-validated figure; LOL eval15: LIME 16.76, RetinexNet 16.77, EnlightenGAN 17.48, KinD 20.87")
    p = schemas.spec("defog").resolve_params({})
    haze = [(h, data / "haze-dev" / "gt" / f"{h.stem.split('_')[0]}.png")
            for h in sorted((data / "haze-dev" / "hazy").glob("*.png"))]
    rows += restoration_pair_figures(
        f"haze-dev defog, gamma {p['gamma']}, natural_look {p['natural_look']}", haze,
        lambda rgb: defog(rgb, p["gamma"], p["natural_look"]),
        "goal >= 20 dB; SOTS-indoor: DCP 16.62, AOD-Net 19.06, GridDehazeNet 32.16")
    return rows


def recognition_figures(data: Path, limit: int | None) -> list[tuple[str, str, str, str]]:
    engines = Engines()
    engines.registry.analyser.capacity = 0  # every figure from a fresh analysis pass
    coco = coco_figures(engines, data, limit)
    imagenet, first_tag, n_imagenet = imagenet_figure(engines, data, limit)
    scene, n_scene, per_scene, stray = scene_figure(engines, data, limit)
    recapture = recapture_figures(engines, data, limit)
    rows = [
        ("coco-dev", f"media-tagging-det mAP@0.5 (threshold 1, limit 50), {coco['images']} photos",
         f"{coco['map50']:.1f}", "CenterNet raw 51.1, NanoDet raw 45.8 (bench/detectors.py); YOLOv5n mAP@0.5 45.7 (COCO val2017)"),
        ("coco-dev", "image tagging v2, default threshold: precision of COCO names (CV)", f"{coco['precision']:.3f}",
         "goal >= 0.85"),
        ("coco-dev", "image tagging v2, default threshold: recall of COCO names (CV)", f"{coco['recall']:.3f}",
         "goal >= 0.70"),
        ("imagenet-dev", f"class among v2 tags at threshold 30, {n_imagenet} photos", f"{imagenet:.3f}",
         "goal >= 0.75; EfficientNet-Lite0 top-1 75.1 on ImageNet val"),
        ("imagenet-dev", f"first v2 tag at the default threshold names the class, its parent or COCO word, "
         f"{n_imagenet} photos", f"{first_tag:.3f}", "goal >= 0.90"),
        ("scene-dev", f"a tag naming the scene, {n_scene} photos, 5-fold cross-validated", f"{scene:.3f}",
         "goal >= 0.70 (" + ", ".join(f"{k} {v:.2f}" for k, v in per_scene.items()) + ")"),
        ("imagenet-dev", "object photos given a scene tag anyway (cross-validated)", f"{stray:.3f}", "lower is better"),
    ]
    from no_coco import figures as no_coco_figures

    rows += no_coco_figures(engines.run)
    for name, (value, count) in recapture.items():
        how = "" if "never trained" in name else ", cross-validated"
        rows.append(("recapture", f"{name}, {count} photos{how}", f"{value:.3f}",
                     "goal >= 0.90" if "natural-photo" in name else "goal >= 0.95"))
    rows.append(("latency", "image tagging v2 per photo, one core (median, COCO photos)",
                 f"{statistics.median(coco['latency_ms']):.0f} ms", ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "eval")
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos per set (a quick look)")
    parser.add_argument("--only", choices=("recognition", "restoration", "similar"), help="one part of the figures")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core: latencies as a single worker sees them
    rows = []
    if args.only in (None, "recognition"):
        rows += recognition_figures(args.data, args.limit)
    if args.only in (None, "restoration"):
        rows += restoration_figures(args.data)
    if args.only in (None, "similar"):
        from near_duplicates import figures as near_duplicate_figures

        rows += near_duplicate_figures(args.data, args.limit)
    width = max(len(r[1]) for r in rows)
    print(f"{'set':13s} {'figure':{width}s} {'value':>13s}  published / goal")
    for row in rows:
        print(f"{row[0]:13s} {row[1]:{width}s} {row[2]:>13s}  {row[3]}")


if __name__ == "__main__":
    main()
