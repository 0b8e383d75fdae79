"""Background-music recognition: the mp4's audio track fingerprinted against the configured music library.

The library is a folder of audio or video files (anything FFmpeg decodes); a file's name without its
suffix is the `audio_name` returned. No match (or an empty library) gives an empty `audio_name`.
"""
from __future__ import annotations

import logging
from pathlib import Path

from imgrec.schemas import bgm_recognition as schema
from imgrec.schemas.common import ParsedRequest
from imgrec.schemas.errors import ApiError

from .audio import FingerprintIndex, decode_audio
from .base import folder_problem

log = logging.getLogger("imgrec.engines.bgm")
AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".m4a", ".aac", ".mp4", ".mov", ".opus", ".webm"}


def load_library(folder: Path | None) -> FingerprintIndex:
    index = FingerprintIndex()
    if folder is None:
        return index
    root = folder.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"music library {folder} is not a folder")
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
            continue
        if not path.resolve().is_relative_to(root):  # a link leading out of the library
            log.warning("music library: %s points outside the library, skipped", path.name)
            continue
        try:
            index.add(path.stem, decode_audio(path.read_bytes()))
        except ApiError as err:
            log.warning("music library: %s skipped (%s)", path.name, err.code)
    log.info("music library: %d tracks indexed", len(index))
    return index


class BgmRecognitionEngine:
    spec = schema.SPEC

    def __init__(self, registry):
        self.index = load_library(registry.settings.bgm.library)

    @staticmethod
    def problem(settings) -> str | None:
        return folder_problem(settings.bgm.library, "[bgm] library")

    def run(self, data: bytes, request: ParsedRequest) -> schema.Response:
        samples = decode_audio(data, require_mp4=True)
        match = self.index.match(samples) if len(samples) else None
        return schema.Response(result=schema.Result(audio_name=match.name if match else ""))
