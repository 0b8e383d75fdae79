"""Audio fingerprinting with spectral peak landmarks (Wang 2003, the "Shazam" scheme).

Audio is decoded with PyAV (bundled FFmpeg) to mono 11,025 Hz. A log-magnitude STFT (1024-point, hop 256)
gives a spectrogram whose local maxima are the peaks; each anchor peak pairs with a few later peaks in a
target zone, and (f1, f2 - f1, dt) packs into one integer hash stored with the anchor's time. A clip
matches a track when many of its hashes agree on one time offset: that makes matching robust to noise and
volume (only peak positions matter) and to where the clip was cut from (offsets, not absolute times).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from imgrec.schemas.errors import ApiError

RATE = 11025
N_FFT = 1024
HOP = 256
PEAK_NEIGHBOURHOOD = (15, 11)  # frequency bins x frames
FAN_OUT = 6
MAX_DT = 63  # frames (~1.5 s)
MAX_DF = 63  # bins
MAX_SECONDS = 600  # decode at most 10 minutes of any input


def decode_audio(data: bytes, require_mp4: bool = False) -> np.ndarray:
    """Mono float32 samples at RATE. ApiError AIS.0021 for a container that is not (allowed) media."""
    import av

    try:
        container = av.open(io.BytesIO(data), mode="r")
    except Exception:
        raise ApiError.of("AIS.0021", "not a media file") from None
    with container:
        if require_mp4 and "mp4" not in container.format.name:
            raise ApiError.of("AIS.0021", f"{container.format.name} is not mp4")
        streams = container.streams.audio
        if not streams:
            return np.zeros(0, np.float32)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        chunks, total = [], 0
        try:
            for frame in container.decode(streams[0]):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += len(chunk)
                if total >= MAX_SECONDS * RATE:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError:
            if not chunks:
                raise ApiError.of("AIS.0503", "audio track could not be decoded") from None
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def spectrogram(samples: np.ndarray) -> np.ndarray:
    if len(samples) < N_FFT:
        return np.zeros((N_FFT // 2 + 1, 0), np.float32)
    frames = 1 + (len(samples) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    window = np.hanning(N_FFT).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(samples[idx] * window, axis=1)).T  # (bins, frames)
    return np.log(spectrum + 1e-6).astype(np.float32)


def peaks(spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frequency bins, frames) of local maxima that stand out from their frame."""
    import cv2

    if spec.shape[1] == 0:
        return np.zeros(0, int), np.zeros(0, int)
    kernel = np.ones(PEAK_NEIGHBOURHOOD, np.uint8)
    local_max = cv2.dilate(spec, kernel)
    floor = np.median(spec, axis=0, keepdims=True) + 2.0  # ~e^2 = 7x above the frame's median magnitude
    mask = (spec == local_max) & (spec > floor)
    mask[:2] = False  # DC and near-DC rumble
    f, t = np.nonzero(mask)
    order = np.argsort(t, kind="stable")
    return f[order], t[order]


def landmarks(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, anchor times in frames)."""
    f, t = peaks(spectrogram(samples))
    hashes, times = [], []
    for i in range(len(t)):
        paired = 0
        for j in range(i + 1, len(t)):
            dt = t[j] - t[i]
            if dt > MAX_DT:
                break
            df = f[j] - f[i]
            if dt < 1 or abs(df) > MAX_DF:
                continue
            hashes.append((int(f[i]) << 14) | ((int(df) + 64) << 7) | int(dt))
            times.append(int(t[i]))
            paired += 1
            if paired >= FAN_OUT:
                break
    return np.asarray(hashes, np.int64), np.asarray(times, np.int64)


@dataclass
class Match:
    name: str
    votes: int  # landmarks agreeing on the best offset
    offset_s: float  # where in the track the clip starts
    share: float  # votes / landmarks in the clip


class FingerprintIndex:
    def __init__(self) -> None:
        self.names: list[str] = []
        self._hashes = np.zeros(0, np.int64)
        self._tracks = np.zeros(0, np.int32)
        self._times = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str, samples: np.ndarray) -> None:
        hashes, times = landmarks(samples)
        track = len(self.names)
        self.names.append(name)
        self._hashes = np.concatenate([self._hashes, hashes])
        self._tracks = np.concatenate([self._tracks, np.full(len(hashes), track, np.int32)])
        self._times = np.concatenate([self._times, times])
        order = np.argsort(self._hashes, kind="stable")
        self._hashes, self._tracks, self._times = self._hashes[order], self._tracks[order], self._times[order]

    def match(self, samples: np.ndarray, min_votes: int = 10, min_share: float = 0.06) -> Match | None:
        """The best track, if enough of the clip's landmarks (count and share) agree on one offset.
        Chance agreement between unrelated music stays around 1-3% of a clip's landmarks."""
        hashes, times = landmarks(samples)
        if not len(hashes) or not len(self._hashes):
            return None
        left = np.searchsorted(self._hashes, hashes, "left")
        right = np.searchsorted(self._hashes, hashes, "right")
        counts = right - left
        if counts.sum() == 0:
            return None
        query_idx = np.repeat(np.arange(len(hashes)), counts)
        db_idx = np.concatenate([np.arange(a, b) for a, b in zip(left, right) if b > a])
        tracks = self._tracks[db_idx]
        offsets = self._times[db_idx] - times[query_idx]
        keys = tracks.astype(np.int64) * (1 << 32) + (offsets + (1 << 31))
        values, votes = np.unique(keys, return_counts=True)
        best = int(np.argmax(votes))
        if votes[best] < min_votes or votes[best] / len(hashes) < min_share:
            return None
        track = int(values[best] >> 32)
        offset = int((values[best] & 0xFFFFFFFF) - (1 << 31))
        return Match(self.names[track], int(votes[best]), offset * HOP / RATE, float(votes[best]) / len(hashes))
