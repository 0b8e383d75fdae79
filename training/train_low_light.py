"""Train the low-light enhancement network the service ships and export ONNX.

    python training/train_low_light.py [--data ../shared/eval] [--minutes 6] [--folds 5]

Needs torch (training only, its own environment: `pip install torch==2.13.0 onnx opencv-python-headless`).

First an exposure gamma (imgrec/engines/low_light_steps.py) brings the photo's work copy (long side 128 px) to
a mean of 0.4: a per-pixel tone curve, lifting shadows more than highlights. The network then reads that copy
and answers a smooth per-pixel, per-channel log-gain map (in [1/8, 8]) that corrects it where one curve for
the whole photo is wrong (a lamp, a window, a colour cast); the engine upsamples the map to the full image
and multiplies. The map is smooth, so full-resolution cost is a power and a multiply per pixel whatever the
photo's size, and the network sees the whole photo at once. A small U-Net with a global-context branch
(121k parameters).

Data: the 30 real LOL pairs of `lol-dev` (camera short exposure -> normal exposure) and synthetic pairs made
from the normally exposed photos of `imagenet-dev` and `coco-dev` (darkened by a random gain and gamma, a random
colour cast, Poisson-Gaussian sensor noise, 8-bit quantisation), so it also learns to leave a well-exposed
photo alone. `--folds 5` first reports the LOL PSNR of 5-fold cross-validation (each fold's network never saw
its photos; the engine's whole path, denoising included), then trains on everything and exports.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import train_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("steps", ROOT / "imgrec" / "engines" / "low_light_steps.py")
steps = importlib.util.module_from_spec(_spec)  # the engine's own exposure gamma and denoiser
_spec.loader.exec_module(steps)
WORK_SIDE = 128  # the engine's work copy: long side in pixels (imgrec/engines/dark_enhance.py)
CROP = 80
LOL_SHARE = 0.5  # of the training crops from the real LOL pairs; the rest synthetic
MAX_LOG_GAIN = math.log(8.0)


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1))


class LowLightNet(nn.Module):
    """RGB in [0, 1] at work size, exposure-normalised -> log-gain per channel, in [-log 8, log 8]."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(conv(6, w, 2), conv(w, w))  # half the work size: the map is smooth
        self.enc2 = nn.Sequential(conv(w, 2 * w, 2), conv(2 * w, 2 * w))
        self.enc3 = nn.Sequential(conv(2 * w, 4 * w, 2), conv(4 * w, 4 * w))
        self.context = nn.Sequential(nn.Linear(4 * w, 4 * w), nn.LeakyReLU(0.1))
        self.dec2 = nn.Sequential(conv(6 * w, 2 * w), conv(2 * w, 2 * w))
        self.dec1 = nn.Sequential(conv(3 * w, w), nn.Conv2d(w, 3, 3, 1, 1))

    def forward(self, rgb):
        x = torch.cat([rgb, torch.log(rgb + 1 / 255) / 5.5], dim=1)  # log input: exposure as an offset
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e3 = e3 + self.context(e3.mean(dim=(2, 3)))[:, :, None, None]  # the photo's overall exposure
        d2 = self.dec2(torch.cat([nn.functional.interpolate(e3, size=e2.shape[2:], mode="bilinear"), e2], 1))
        d1 = self.dec1(torch.cat([nn.functional.interpolate(d2, size=e1.shape[2:], mode="bilinear"), e1], 1))
        d1 = nn.functional.interpolate(d1, size=rgb.shape[2:], mode="bilinear")
        return MAX_LOG_GAIN * torch.tanh(d1)  # gain in [1/8, 8] on top of the exposure gamma


def work_size(h: int, w: int) -> tuple[int, int]:
    s = WORK_SIDE / max(h, w)
    return max(8, round(w * s)), max(8, round(h * s))


def small(rgb: np.ndarray) -> np.ndarray:
    """The engine's work copy, float in [0, 1]."""
    return cv2.resize(rgb, work_size(*rgb.shape[:2]), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def lol_pairs(data: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(load(p), load(data / "lol-dev" / "high" / p.name)) for p in sorted((data / "lol-dev" / "low").glob("*.png"))]


def normal_photos(data: Path) -> list[np.ndarray]:
    paths = sorted((data / "imagenet-dev").glob("*.JPEG")) + sorted((data / "coco-dev" / "images").rglob("*.jpg"))
    return [img for img in (small(load(p)) for p in paths) if min(img.shape[:2]) >= CROP]


def darken(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A synthetic short exposure of a normally exposed photo (float [0, 1] in and out)."""
    gain = rng.uniform(0.03, 0.35) * rng.uniform(0.85, 1.15, 3)
    dark = clean ** rng.uniform(1.0, 1.6) * gain
    sigma = np.sqrt(dark * rng.uniform(0, 0.002) + rng.uniform(0, 2e-5))
    dark = dark + rng.standard_normal(dark.shape).astype(np.float32) * sigma
    return np.round(np.clip(dark, 0, 1) * 255) / 255


def sample(lol, photos, rng: np.random.Generator, size: int = CROP) -> tuple[np.ndarray, np.ndarray]:
    """One (input, target) crop at work resolution; of the synthetic ones, 15% are normal photos left as they are."""
    if lol and rng.random() < LOL_SHARE:
        low, high = lol[rng.integers(len(lol))]
        low = np.clip(low * rng.uniform(0.7, 1.4), 0, 1)  # another exposure time, the same wanted result
    else:
        high = photos[rng.integers(len(photos))]
        low = high if rng.random() < 0.15 else darken(high, rng).astype(np.float32)
    low = low ** steps.exposure_gamma(low)
    top, left = rng.integers(0, low.shape[0] - size + 1), rng.integers(0, low.shape[1] - size + 1)
    low, high = low[top:top + size, left:left + size], high[top:top + size, left:left + size]
    if rng.random() < 0.5:
        low, high = low[:, ::-1], high[:, ::-1]
    return low, high


def train(lol, photos, minutes: float, seed: int = 0) -> LowLightNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lol_small = [(small(lo), small(hi)) for lo, hi in lol]
    model = LowLightNet()

    def batch_loss(step: int) -> torch.Tensor:
        crops = [sample(lol_small, photos, rng) for _ in range(16)]
        low = torch.from_numpy(np.stack([c[0] for c in crops]).transpose(0, 3, 1, 2).copy())
        high = torch.from_numpy(np.stack([c[1] for c in crops]).transpose(0, 3, 1, 2).copy())
        out = torch.clamp(low * torch.exp(model(low)), 0, 1)
        return nn.functional.mse_loss(out, high) + 0.5 * nn.functional.l1_loss(out, high)

    return train_for(model, minutes, 2e-3, batch_loss)


def enhance(model: LowLightNet, low: np.ndarray) -> np.ndarray:
    """The engine's path (imgrec/engines/dark_enhance.py): gain from the work copy, upsampled, applied at full
    size, rounded to 8 bits, denoised."""
    work = small(low)
    gamma = steps.exposure_gamma(work)
    with torch.no_grad():
        log_gain = model(torch.from_numpy((work ** gamma).transpose(2, 0, 1)[None].copy()))[0].numpy().transpose(1, 2, 0)
    gain = cv2.resize(np.exp(log_gain), (low.shape[1], low.shape[0]), interpolation=cv2.INTER_LINEAR)
    lifted = (np.clip((low.astype(np.float32) / 255) ** gamma * gain, 0, 1) * 255 + 0.5).astype(np.uint8)
    return steps.denoise(lifted)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255 ** 2 / np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "eval")
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--folds", type=int, default=5, help="cross-validate on LOL first (0: skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "imgrec" / "engines" / "weights")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lol, photos = lol_pairs(args.data), normal_photos(args.data)
    if args.folds:
        scores = []
        for fold in range(args.folds):
            held = lol[fold::args.folds]
            model = train([p for i, p in enumerate(lol) if i % args.folds != fold], photos, args.minutes / 2, fold)
            scores += [psnr(enhance(model, lo), hi) for lo, hi in held]
            print(f"fold {fold}: mean PSNR so far {np.mean(scores):.2f} dB over {len(scores)} photos", flush=True)
        print(f"cross-validated LOL PSNR {np.mean(scores):.2f} dB", flush=True)
    model = train(lol, photos, args.minutes)
    path = args.out / "low_light.onnx"
    torch.onnx.export(model, torch.rand(1, 3, 85, 128), str(path), input_names=["rgb"], output_names=["log_gain"],
                      opset_version=17, dynamic_axes={"rgb": {2: "h", 3: "w"}, "log_gain": {2: "h", 3: "w"}},
                      dynamo=False)
    print("exported", path, flush=True)


if __name__ == "__main__":
    main()
