"""Train the defog network the service ships (a transmission estimator) and export ONNX.

    python training/train_defog.py [--data ../shared/eval] [--minutes 10] [--resume]

Needs torch (training only, its own environment: `pip install torch==2.13.0 onnx opencv-python-headless`).

The atmospheric scattering model I = J t + A (1 - t) is kept (as in DCP, DehazeNet, AOD-Net): the engine
estimates the airlight A from the haziest pixels (dark channel), and this network estimates the transmission
t from the photo divided by A, on a work copy (long side 320 px); the map is refined with a guided filter at
full size and J = (I - A) / t + A. Learned t replaces the dark channel's t, which is wrong on bright surfaces
(white walls, the sky) and darkens the result (DehazeNet's argument).

Data: synthetic haze on the haze-free photos of `imagenet-dev`, `coco-dev` and `lol-dev/high` (about 360), no
depth needed: t follows a random smooth field (a ramp in a random direction plus blurred noise, with random
depth range and scattering coefficient), and A is grey in [0.7, 1.0] with a slight tint (RESIDE's range). The
network therefore has to read haze from local contrast, saturation and brightness, not from the scene layout.
`haze-dev` (SOTS-indoor) is never seen in training: its figure in bench/quality.py is a held-out figure.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from common import resume, train_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORK_SIDE = 320  # the engine's work copy: long side in pixels (imgrec/engines/defog.py)
CROP = 96


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1))


class TransmissionNet(nn.Module):  # a small U-Net, 153k parameters
    """I / A in [0, ~1.4] at work size -> transmission in [0.05, 1]."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(conv(4, w, 2), conv(w, w))  # half the work size: t is smooth, refined later
        self.enc2 = nn.Sequential(conv(w, 2 * w, 2), conv(2 * w, 2 * w))
        self.enc3 = nn.Sequential(conv(2 * w, 4 * w, 2), conv(4 * w, 4 * w), conv(4 * w, 4 * w))
        self.dec2 = nn.Sequential(conv(6 * w, 2 * w), conv(2 * w, 2 * w))
        self.dec1 = nn.Sequential(conv(3 * w, w), nn.Conv2d(w, 1, 3, 1, 1))

    def forward(self, x):
        dark = torch.min(x, dim=1, keepdim=True).values  # the dark channel's cue, given for free
        e1 = self.enc1(torch.cat([x, dark], 1))
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([nn.functional.interpolate(e3, size=e2.shape[2:], mode="bilinear"), e2], 1))
        d1 = self.dec1(torch.cat([nn.functional.interpolate(d2, size=e1.shape[2:], mode="bilinear"), e1], 1))
        d1 = nn.functional.interpolate(d1, size=x.shape[2:], mode="bilinear")
        return 0.05 + 0.95 * torch.sigmoid(d1)


def load_small(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    s = WORK_SIDE / max(rgb.shape[:2])
    size = (max(8, round(rgb.shape[1] * s)), max(8, round(rgb.shape[0] * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def photos(data: Path) -> list[np.ndarray]:
    paths = (sorted((data / "imagenet-dev").glob("*.JPEG")) + sorted((data / "coco-dev" / "images").rglob("*.jpg"))
             + sorted((data / "lol-dev" / "high").glob("*.png")))
    return [img for img in map(load_small, paths) if min(img.shape[:2]) >= CROP]


def smooth_field(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random depth-like field in [0, 1]: a ramp in a random direction plus blurred noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * math.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), rng.uniform(6, 30))
    field = rng.uniform(0, 1) * (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6) + noise / (np.ptp(noise) + 1e-6)
    return (field - field.min()) / (np.ptp(field) + 1e-6)


def hazy_sample(clean: np.ndarray, rng: np.random.Generator):
    top, left = rng.integers(0, clean.shape[0] - CROP + 1), rng.integers(0, clean.shape[1] - CROP + 1)
    j = clean[top:top + CROP, left:left + CROP]
    if rng.random() < 0.5:
        j = j[:, ::-1]
    near, far = sorted(rng.uniform(0, 1, 2))
    depth = near + (far - near) * smooth_field(CROP, rng)
    t = np.exp(-rng.uniform(0.5, 2.5) * depth)[..., None]
    if rng.random() < 0.1:
        t = np.ones_like(t)  # a haze-free photo must stay as it is
    air = rng.uniform(0.7, 1.0) * rng.uniform(0.95, 1.05, 3)
    hazy = np.round(np.clip(j * t + air * (1 - t), 0, 1) * 255) / 255
    return hazy.astype(np.float32), j.astype(np.float32), t.astype(np.float32), air.astype(np.float32)


def airlight(img: np.ndarray) -> np.ndarray:
    """The engine's estimate (imgrec/engines/defog.py): the brightest 0.1% of the dark channel."""
    dark = cv2.erode(img.min(axis=2), cv2.getStructuringElement(cv2.MORPH_RECT, (15, 15)))
    count = max(1, dark.size // 1000)
    idx = np.argpartition(dark.ravel(), -count)[-count:]
    return img.reshape(-1, 3)[idx].mean(axis=0).clip(0.05, 1.0)


def train(photos, minutes: float, start_from: Path | None = None, seed: int = 0) -> TransmissionNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TransmissionNet()
    rate = 2e-3
    if start_from is not None:
        resume(model, start_from)
        rate /= 3

    def batch_loss(step: int) -> torch.Tensor:
        samples = [hazy_sample(photos[rng.integers(len(photos))], rng) for _ in range(16)]
        # The network sees I / A with A as the engine estimates it, errors included.
        inputs = np.stack([h / airlight(h) for h, _, _, _ in samples]).transpose(0, 3, 1, 2)
        hazy = torch.from_numpy(np.stack([s[0] for s in samples]).transpose(0, 3, 1, 2).copy())
        clean = torch.from_numpy(np.stack([s[1] for s in samples]).transpose(0, 3, 1, 2).copy())
        t_true = torch.from_numpy(np.stack([s[2] for s in samples]).transpose(0, 3, 1, 2).copy())
        air = torch.from_numpy(np.stack([airlight(s[0]) for s in samples]))[:, :, None, None]
        t = model(torch.from_numpy(np.ascontiguousarray(inputs)))
        restored = torch.clamp((hazy - air) / t + air, 0, 1)
        return nn.functional.mse_loss(restored, clean) + nn.functional.mse_loss(t, t_true)

    return train_for(model, minutes, rate, batch_loss)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "eval")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=ROOT / "imgrec" / "engines" / "weights")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="continue from the network already in --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = args.out / "defog_transmission.onnx"
    model = train(photos(args.data), args.minutes, path if args.resume else None)
    torch.onnx.export(model, torch.rand(1, 3, 240, 320), str(path), input_names=["rgb_over_airlight"],
                      output_names=["transmission"], opset_version=17,
                      dynamic_axes={"rgb_over_airlight": {2: "h", 3: "w"}, "transmission": {2: "h", 3: "w"}},
                      dynamo=False)
    print("exported", path, flush=True)


if __name__ == "__main__":
    main()
