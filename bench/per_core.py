"""Photos per second per core for the seven-API pass (tagging v2 and v1, media tagging with and without boxes,
celebrity, recapture, main object): this tree against a baseline revision, measured side by side in one run.

    .venv/bin/python bench/per_core.py [--baseline 8ff6f50] [--photos 30] [--rounds 3] [--no-wire] [--no-stages]

Each measurement is a child process pinned to one core with one onnxruntime/OpenCV thread, reading the same
photos (COCO and ImageNet dev photos, 335-640 px), without a celebrity gallery and with a one-person one.
Rounds alternate baseline and this tree so that machine load hits both alike; the figure is the median round.
- in-process: the engines called as the pipeline's embedded backend calls them, one image after another;
- over the wire: `imgrec serve` (one worker, pinned to one core, auth off) answering the seven requests of
  each photo one after another from a client pinned to the other cores;
- the scaling from 1 to 2 cores: two in-process children at once, one per core, against one alone;
- the stage table: what each stage of this tree costs per photo.
The baseline is exported with `git archive` and runs against the same virtual environment and models.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, table

EVAL = ROOT.parent / "shared" / "eval"
APIS = ("image_tagging", "image_tagging_v1", "media_tagging", "media_tagging_det", "celebrity_recognition",
        "recapture_detect", "main_object_detection")
BASELINE = "8ff6f50"  # the commit issue 29 measured (the last before its first change)


def photo_paths(n: int) -> list[Path]:
    coco = sorted((EVAL / "coco-dev" / "images").glob("*.jpg"))
    imagenet = sorted((EVAL / "imagenet-dev").glob("*.JPEG"))
    half = n // 2
    return coco[:half] + imagenet[:n - half]


def warmup_paths() -> list[Path]:
    return sorted((EVAL / "coco-dev" / "images").glob("*.jpg"))[-3:]


def make_gallery(folder: Path) -> Path:
    import numpy as np
    from PIL import Image
    from skimage import data

    person = folder / "gallery" / "Eileen Collins"
    person.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(data.astronaut()[0:300, 100:400])).save(person / "portrait.jpg")
    return folder / "gallery"


def pin(core: int) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):
        pass


PACKAGES = {"imgrec": "imgrec", "imgrec.schemas": "schemas", "imgrec.connectors": "connectors",
            "imgrec.tasks": "tasks", "imgrec.flows": "flows"}  # pyproject's package-dir


def use_tree(tree: str) -> None:
    """Import `imgrec` from `tree`: the editable install maps imgrec.schemas & co. to this checkout, so the
    packages of the tree are loaded first by hand (in pyproject's layout)."""
    import importlib.util

    for name, folder in PACKAGES.items():
        init = Path(tree) / folder / "__init__.py"
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        if "." in name:
            setattr(sys.modules["imgrec"], name.split(".")[1], module)


def cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return [0]


# ------------------------------------------------------------------------------------------------ children
def child_inprocess(args) -> None:
    """ms per photo of the seven-API pass, in-process, on one core."""
    pin(args.core)
    use_tree(args.tree)
    import cv2

    cv2.setNumThreads(1)
    from imgrec import schemas
    from imgrec.engines import EngineRegistry
    from imgrec.settings import Settings

    assert Path(sys.modules["imgrec.schemas"].__file__).is_relative_to(args.tree)
    registry = EngineRegistry(Settings(celebrity={"gallery": args.gallery} if args.gallery else {}))
    photos = [Path(p).read_bytes() for p in args.paths.split(os.pathsep)]

    def one(data: bytes) -> None:
        for api in APIS:
            registry.get(api).run(data, schemas.spec(api).request({}, image=data))

    for path in warmup_paths():
        one(path.read_bytes())
    started = time.perf_counter()
    for data in photos:
        one(data)
    print(json.dumps({"ms": (time.perf_counter() - started) / len(photos) * 1000}))


def child_stages(args) -> None:
    """What each stage of this tree costs per photo (one core)."""
    pin(args.core)
    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    from imgrec.engines import faces, recapture_features, scene
    from imgrec.engines.classifier import classifier
    from imgrec.engines.detector import detector
    from imgrec.engines.imaging import decode, work_image
    from imgrec.schemas.common import ANY_IMAGE, inspect_image

    photos = [Path(p).read_bytes() for p in args.paths.split(os.pathsep)]
    infos = [inspect_image(d, ANY_IMAGE) for d in photos]
    works = [work_image(d, i)[0] for d, i in zip(photos, infos)]
    models = faces.face_models()
    stages = {
        "decode (analysis work image)": lambda k: work_image(photos[k], infos[k]),
        "CenterNet detector": lambda k: detector().detect(works[k]),
        "classifier (EfficientNet-Lite0)": lambda k: classifier().predict(works[k]),
        "faces (BlazeFace)": lambda k: models.detect(works[k], with_descriptors=False),
        "faces + descriptors (with a gallery)": lambda k: models.detect(works[k]),
        "QR code + barcode tags": lambda k: scene.code_tags(works[k]),
        "colour, light, document tags": lambda k: (scene.colour_tags(works[k]), scene.lighting_tags(works[k]),
                                                   scene.document_tags(works[k])),
        "recapture features": lambda k: recapture_features.features(works[k]),
    }
    out = {}
    for name, fn in stages.items():
        fn(0)
        started = time.perf_counter()
        for k in range(len(photos)):
            fn(k)
        out[name] = (time.perf_counter() - started) / len(photos) * 1000
    del np
    print(json.dumps(out))


def child_wire(args) -> None:
    """ms per photo of the seven requests against `imgrec serve` of `args.tree`, pinned to one core."""
    import httpx

    others = [core for core in cores() if core != args.core]
    if others:  # the client on another core than the service's
        os.sched_setaffinity(0, set(others))
    sys.path.insert(0, str(ROOT))
    from imgrec import schemas
    from tests.helpers import free_port

    work = Path(tempfile.mkdtemp(prefix="imgrec-percore-"))
    config = work / "imgrec.toml"
    text = "[auth]\nenabled = false\n"
    if args.gallery:
        text += f'\n[celebrity]\ngallery = "{args.gallery}"\n'
    config.write_text(text)
    port = free_port()
    serve = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from per_core import use_tree; "
             f"use_tree({args.tree!r}); from imgrec.cli import app; "
             f"sys.argv = ['imgrec', 'serve', '--host', '127.0.0.1', '--port', '{port}', '--config', {str(config)!r},"
             " '--workers', '1', '--log-level', 'warning']; app()")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(["taskset", "-c", str(args.core), sys.executable, "-c", serve], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("service did not start")
            time.sleep(0.3)
        client = httpx.Client(base_url=base, timeout=120)

        def one(data: bytes) -> None:
            body = {"image": base64.b64encode(data).decode()}
            for api in APIS:
                path = schemas.spec(api).path.replace("{project_id}", "bench")
                response = client.post(path, json=body)
                if response.status_code != 200:
                    raise SystemExit(f"{api}: {response.status_code} {response.text[:200]}")

        for path in warmup_paths():
            one(path.read_bytes())
        photos = [Path(p).read_bytes() for p in args.paths.split(os.pathsep)]
        started = time.perf_counter()
        for data in photos:
            one(data)
        print(json.dumps({"ms": (time.perf_counter() - started) / len(photos) * 1000}))
    finally:
        server.terminate()
        server.wait(10)


# -------------------------------------------------------------------------------------------------- parent
def spawn(mode: str, tree: Path, paths: list[Path], gallery: Path | None, core: int) -> subprocess.Popen:
    command = [sys.executable, __file__, "--child", mode, "--tree", str(tree), "--core", str(core),
               "--paths", os.pathsep.join(map(str, paths))]
    if gallery:
        command += ["--gallery", str(gallery)]
    env = {**os.environ, "IMGREC_MODELS_DIR": str(ROOT / ".cache" / "models")}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"a bench child failed (rc {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def export(revision: str, folder: Path) -> Path:
    tree = folder / f"tree-{revision}"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--photos", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-wire", action="store_true")
    parser.add_argument("--no-stages", action="store_true")
    parser.add_argument("--child")
    parser.add_argument("--tree")
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--paths")
    parser.add_argument("--gallery")
    args = parser.parse_args()
    if args.child:
        {"inprocess": child_inprocess, "wire": child_wire, "stages": child_stages}[args.child](args)
        return

    work = Path(tempfile.mkdtemp(prefix="imgrec-percore-"))
    baseline = export(args.baseline, work)
    trees = {f"baseline {args.baseline}": baseline, "this tree": ROOT}
    paths = photo_paths(args.photos)
    gallery = make_gallery(work)
    first, second = (cores() + cores())[:2]
    modes = ["inprocess"] + ([] if args.no_wire else ["wire"])
    figures: dict[tuple, list[float]] = {}
    for _ in range(args.rounds):
        for mode in modes:
            for with_gallery in (False, True):
                for name, tree in trees.items():
                    ms = result(spawn(mode, tree, paths, gallery if with_gallery else None, first))["ms"]
                    figures.setdefault((mode, with_gallery, name), []).append(ms)
    rows = []
    for mode in modes:
        for with_gallery in (False, True):
            base_ms = statistics.median(figures[(mode, with_gallery, f"baseline {args.baseline}")])
            this_ms = statistics.median(figures[(mode, with_gallery, "this tree")])
            rows.append([{"inprocess": "in-process", "wire": "over the wire"}[mode],
                         "one person" if with_gallery else "none", f"{base_ms:.1f}", f"{1000 / base_ms:.2f}",
                         f"{this_ms:.1f}", f"{1000 / this_ms:.2f}", f"{base_ms / this_ms:.2f} x"])
    print(table(f"Seven-API pass per core ({len(paths)} photos, median of {args.rounds} rounds)",
                ["path", "gallery", "baseline ms", "baseline photos/s", "this ms", "this photos/s", "speed-up"],
                rows))

    if len(cores()) > 1:
        one = result(spawn("inprocess", ROOT, paths, None, first))["ms"]
        both = [spawn("inprocess", ROOT, paths, None, core) for core in (first, second)]
        pair = [result(p)["ms"] for p in both]
        total = sum(1000 / ms for ms in pair)
        print(table("Scaling, this tree in-process, no gallery", ["cores", "photos/s", "x one core"],
                    [["1", f"{1000 / one:.2f}", "1.00"], ["2", f"{total:.2f}", f"{total * one / 1000:.2f}"]]))
    if not args.no_stages:
        stages = result(spawn("stages", ROOT, paths, None, first))
        print(table("Stages of this tree, ms per photo (one core)", ["stage", "ms"],
                    [[name, f"{ms:.1f}"] for name, ms in stages.items()]))


if __name__ == "__main__":
    main()
