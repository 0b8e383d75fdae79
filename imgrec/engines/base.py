"""What an engine is: one class per API, built from the registry, `run(data, request)` on raw input bytes,
returning the endpoint's response model (or an `ImageOutput`)."""
from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

import numpy as np

from imgrec.schemas.common import FORMAT_FILES, IMAGE_FORMATS, ApiSpec, ImageInfo, ParsedRequest, inspect_image
from imgrec.schemas.errors import ApiError

from . import imaging

log = logging.getLogger("imgrec.engines")

if TYPE_CHECKING:
    from . import EngineRegistry


@dataclass
class ImageOutput:
    """An image-out endpoint's answer; the caller decides between base64 JSON and a raw file response."""

    data: bytes
    format: str  # PIL format name

    @property
    def media_type(self) -> str:
        return FORMAT_FILES[self.format][0]


class Engine(Protocol):
    spec: ClassVar[ApiSpec]

    def __init__(self, registry: "EngineRegistry") -> None:
        """Take what the engine needs (settings, the shared analyser, model folders) from the registry."""

    def run(self, data: bytes, request: ParsedRequest) -> Any:
        """Return the endpoint's response model (or an `ImageOutput`). Raise ApiError for bad input."""

    # Optionally, `problem(settings) -> str | None` (a static or class method): what keeps the engine from
    # working with these settings (a configured folder that is not there, a model file not set up), found
    # without loading anything. Engines that load nothing leave it out.


WEIGHTS = Path(__file__).parent / "weights"  # the networks and heads this project trained (README: provenance)


@lru_cache(maxsize=4)
def build_digest(models_dir: str) -> str:
    """What answers in-process, as one digest: the engines' code, the weights this project trained and the
    pinned digests of the converted models. An answer kept for reuse is reused only by the same build."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted([*root.rglob("*.py"), *WEIGHTS.glob("*.*")]):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    for path in sorted(Path(models_dir).glob("*.sha256")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
_sessions_lock = threading.Lock()


def onnx_session(path: Path):
    """An onnxruntime CPU session on one thread: the pipeline and the server parallelise across images."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@lru_cache(maxsize=8)
def _weights_session(name: str):
    path = WEIGHTS / name
    if not path.is_file():
        raise ApiError.of("AIS.0007", f"{name} is missing")
    return onnx_session(path)


def weights_session(name: str):
    """The onnxruntime session of a network shipped in weights/, loaded once (AIS.0007 when it is missing)."""
    with _sessions_lock:
        return _weights_session(name)


_converted_lock = threading.Lock()
_converted: dict[str, Any] = {}


def converted_model(models_dir: Path | None, file: str, build: Callable[[Path], Any]) -> Any:
    """`build(path)` of the model the set-up converted into `models_dir` (default: the set-up's folder), made
    once per process and path; AIS.0007 when the file is missing or damaged (not the file the set-up wrote)."""
    from ..models.fetch import default_models_dir, model_problem

    path = Path(models_dir if models_dir is not None else default_models_dir()) / file
    with _converted_lock:  # first load only; later calls find it
        found = _converted.get(str(path))
        if found is None:
            if problem := model_problem(path):  # missing, or damaged: refused, not run
                log.error("%s", problem)
                raise ApiError.of("AIS.0007", problem)
            found = _converted[str(path)] = build(path)
        return found


def weights_problem(*names: str) -> str | None:
    missing = [name for name in names if not (WEIGHTS / name).is_file()]
    return f"weights missing: {', '.join(missing)}" if missing else None


def folder_problem(folder, setting: str) -> str | None:
    """A configured folder (gallery, music library) that is not there; None when unset or present."""
    return f"{setting} {folder} is not a folder" if folder is not None and not Path(folder).is_dir() else None


def image_info(data: bytes, request: ParsedRequest, spec: ApiSpec) -> ImageInfo:
    """The image's header checked against the endpoint's limits, parsed once per call path: the recognizer
    (or the pipeline before it) has normally done it; an engine called directly does it here."""
    if request.image_info is None:
        request.image_info = inspect_image(data, spec.image)
    return request.image_info


class ImageOutEngine:
    """The image-out APIs' engine: networks shipped in weights/ (loaded on first use, `weights_session`), one
    pixel transform `transform(rgb, params)` of the decoded photo, answered in the input's own format."""

    spec: ClassVar[ApiSpec]
    networks: ClassVar[tuple[str, ...]]

    def __init__(self, registry):
        pass

    @classmethod
    def problem(cls, settings) -> str | None:
        return weights_problem(*cls.networks)

    @staticmethod
    def transform(rgb: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def run(self, data: bytes, request: ParsedRequest) -> ImageOutput:
        return transform_image(data, request, self.spec, lambda rgb: self.transform(rgb, request.params))


def transform_image(data: bytes, request: ParsedRequest, spec: ApiSpec,
                    fn: Callable[[np.ndarray], np.ndarray]) -> ImageOutput:
    """The image-out endpoints: decode, transform, and answer in the input's own format."""
    info = image_info(data, request, spec)
    out = fn(imaging.decode(data, info))
    fmt = info.format if info.format in IMAGE_FORMATS else "JPEG"  # the answer's format, as encode() picks it
    return ImageOutput(imaging.encode(out, fmt), fmt)
