"""The face detector against dlib's HOG (the previous detector), on the eval photos, one core.

    .venv/bin/python bench/faces.py

- recall: NUAA live faces (`recapture-dev/live-face`, one frontal face each): photos with a face found;
- false faces: coco-dev photos without a person (none should have one), and imagenet-dev photos of animal
  classes (a dog's or an otter's face is not a person's);
- COCO photos with persons: the faces HOG finds at upsample 1 (score > 0.3, its surer ones) that the detector
  finds too (centre inside a box), and how many faces each finds;
- ms per photo of each, on the analysis pass's work image (the tagged row includes the detector's pass, which
  the analysis makes anyway).
"""
from __future__ import annotations

import time
from pathlib import Path

from common import ROOT, pin_one_core, table

EVAL = ROOT.parent / "shared" / "eval"


def main() -> None:
    pin_one_core()
    import dlib

    from imgrec.engines.faces import face_models
    from imgrec.engines.imaging import work_image
    from imgrec.engines.labels import imagenet_classes
    from imgrec.schemas.common import ANY_IMAGE, inspect_image

    def load(path: Path):
        data = path.read_bytes()
        return work_image(data, inspect_image(data, ANY_IMAGE))[0]

    def has_person(path: Path) -> bool:
        labels = EVAL / "coco-dev" / "labels" / f"{path.stem}.txt"
        return labels.is_file() and any(line.split()[0] == "0" for line in labels.read_text().splitlines())

    animal = {c.wnid for c in imagenet_classes() if c.category == "animal"}
    coco = sorted((EVAL / "coco-dev" / "images").glob("*.jpg"))
    sets = {
        "live faces (1 each)": [load(p) for p in sorted((EVAL / "recapture-dev" / "live-face").glob("*.*"))],
        "coco-dev, no person": [load(p) for p in coco if not has_person(p)],
        "imagenet-dev, animals": [load(p) for p in sorted((EVAL / "imagenet-dev").glob("*.JPEG"))
                                  if p.name.split("_")[0] in animal],
        "coco-dev, persons": [load(p) for p in coco if has_person(p)],
    }
    models = face_models()
    hog = dlib.get_frontal_face_detector()

    def blaze(rgb):
        return [(f.x, f.y, f.w, f.h) for f in models.detect(rgb, with_descriptors=False)]

    def hog_faces(upsample: int, min_score: float = 0.0):
        def find(rgb):
            rects, scores, _ = hog.run(rgb, upsample, 0.0)
            return [(r.left(), r.top(), r.width(), r.height()) for r, s in zip(rects, scores) if s > min_score]
        return find

    def tagged(rgb):  # the faces the tags keep: those with a detector person around them (analysis.py)
        from imgrec.engines.analysis import _of_a_person
        from imgrec.engines.detector import detector

        people = detector().detect(rgb)
        return [(f.x, f.y, f.w, f.h) for f in models.detect(rgb, with_descriptors=False) if _of_a_person(f, people)]

    detectors = {"BlazeFace (this tree)": blaze, "BlazeFace, tagged (with a person box)": tagged,
                 "HOG upsample 0 (before)": hog_faces(0), "HOG upsample 1 (before, celebrity)": hog_faces(1)}
    rows = []
    found: dict[tuple[str, str], list] = {}
    for name, detect in detectors.items():
        row = [name]
        spent, count = 0.0, 0
        for set_name, photos in sets.items():
            started = time.perf_counter()
            faces = [detect(rgb) for rgb in photos]
            spent += time.perf_counter() - started
            count += len(photos)
            found[(name, set_name)] = faces
            row.append(f"{sum(bool(f) for f in faces)}/{len(photos)} ({sum(map(len, faces))} faces)")
        rows.append(row + [f"{spent / count * 1000:.1f}"])
    print(table("Photos with a face found (faces)", ["detector", *sets, "ms/photo"], rows))

    sure = [hog_faces(1, 0.3)(rgb) for rgb in sets["coco-dev, persons"]]
    blazed = found[("BlazeFace (this tree)", "coco-dev, persons")]
    total = sum(map(len, sure))
    hit = sum(any(bx <= x + w / 2 <= bx + bw and by <= y + h / 2 <= by + bh for bx, by, bw, bh in boxes)
              for faces, boxes in zip(sure, blazed) for x, y, w, h in faces)
    print(f"\ncoco-dev persons: HOG's surer faces (upsample 1, score > 0.3) that BlazeFace finds: {hit}/{total}")


if __name__ == "__main__":
    main()
