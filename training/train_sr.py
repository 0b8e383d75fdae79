"""Train the super-resolution models the service ships (ESPCN and SRCNN, x3 and x4) and export ONNX.

    python training/train_sr.py [--data ../shared/eval] [--minutes 12] [--only ESPCN3|ESPCN4|SRCNN34|SRCNN3|SRCNN4]
                                [--resume]

Needs torch (a training-only dependency, in its own environment:
`pip install torch==2.13.0 onnx pillow`).

Data: the photos of `imagenet-dev`, `coco-dev` and `lol-dev/high` (about 360 photos, none from Set5/Set14), at
half and three-quarter size (the JPEG photos' block artefacts mostly vanish in the downscale, and the scales are
the augmentation SRCNN and VDSR use; the lossless LOL photos also at full size), flipped and rotated.
Low-resolution inputs are made as the benchmarks made theirs: MATLAB's anti-aliased bicubic `imresize` on RGB,
rounded to 8 bits, then luminance (BT.601 Y). Both networks see luminance only, as in their papers; the
engine upscales chroma bicubically.
- ESPCN (Shi et al. 2016): conv5x5(64) tanh, conv3x3(32) tanh, conv3x3(r^2), pixel shuffle.
- SRCNN (Dong et al. 2014), 9-5-5: conv9x9(64) relu, conv5x5(32) relu, conv5x5(1) on the bicubic-upscaled image.
Both graphs take the low-resolution Y and predict the residual over a bicubic upscale made inside the graph,
which converges far faster on a CPU budget than predicting the image (VDSR's observation).
SRCNN works on the upscaled image, so one SRCNN is first trained on x3 and x4 pairs together and exported at
both scales (VDSR showed one network serves several scales); this halves its cost, the larger share of the CPU
budget. That network plateaued (Set5 x3 32.05 dB after 136 min); resumed on one scale's batches alone
(`--only SRCNN3 --resume`, `--only SRCNN4 --resume`) it went on to 32.62 at x3 and 30.08 -> 30.34 at x4: the
shared filters were the limit, not the training time. Adam with a cosine learning-rate decay over the time
budget; 5% of the photos are held out for the log.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from matlab_resize import imresize, to_uint8  # noqa: E402
from common import resume, train_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LR_PATCH = 24  # ESPCN: low-resolution pixels a side per training patch
HR_PATCH = 36  # SRCNN: high-resolution pixels a side (its 9-5-5 layers run at full resolution: 20x ESPCN's cost)


class ESPCN(nn.Module):
    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(nn.Conv2d(1, 64, 5, padding=2), nn.Tanh(), nn.Conv2d(64, 32, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(32, scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, lr):  # low-res Y -> high-res Y
        base = nn.functional.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return base + self.body(lr)


class SRCNN(nn.Module):
    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(nn.Conv2d(1, 64, 9, padding=4), nn.ReLU(), nn.Conv2d(64, 32, 5, padding=2), nn.ReLU(),
                                  nn.Conv2d(32, 1, 5, padding=2))

    def forward(self, lr):  # low-res Y -> high-res Y (the bicubic upscale is SRCNN's own first step)
        base = nn.functional.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return base + self.body(base)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y in [0, 1] from 8-bit RGB."""
    x = rgb.astype(np.float32)
    return (16 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255) / 255


def photos(data: Path) -> list[Path]:
    found = sorted((data / "imagenet-dev").glob("*.JPEG")) + sorted((data / "coco-dev" / "images").rglob("*.jpg"))
    return found + sorted((data / "lol-dev" / "high").glob("*.png"))


def pairs(paths: list[Path], scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(low-res Y, high-res Y) per photo and size."""
    out = []
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        sizes = (1.0, 0.75, 0.5) if path.suffix == ".png" else (0.75, 0.5)
        for version in (rgb if size == 1.0 else to_uint8(imresize(rgb, size)) for size in sizes):
            h, w = (version.shape[0] // scale) * scale, (version.shape[1] // scale) * scale
            if min(h, w) < max(LR_PATCH * scale, 2 * HR_PATCH):
                continue
            hr = version[:h, :w]
            out.append((luminance(to_uint8(imresize(hr, 1 / scale))), luminance(hr)))
    return out


def batch(data, scale: int, patch: int, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`size` random aligned crops, `patch` low-resolution pixels a side, rotated and flipped at random."""
    lrs, hrs = [], []
    for i in rng.integers(0, len(data), size):
        lr, hr = data[i]
        top, left = rng.integers(0, lr.shape[0] - patch + 1), rng.integers(0, lr.shape[1] - patch + 1)
        a = lr[top:top + patch, left:left + patch]
        b = hr[top * scale:(top + patch) * scale, left * scale:(left + patch) * scale]
        k = rng.integers(0, 4)
        a, b = np.rot90(a, k), np.rot90(b, k)
        if rng.random() < 0.5:
            a, b = a[:, ::-1], b[:, ::-1]
        lrs.append(a)
        hrs.append(b)
    return (torch.from_numpy(np.ascontiguousarray(np.stack(lrs)[:, None])),
            torch.from_numpy(np.ascontiguousarray(np.stack(hrs)[:, None])))


def psnr_y(model: nn.Module, data, scale: int) -> float:
    """Mean PSNR on 8-bit Y, border shaved by the scale (the papers' protocol)."""
    values = []
    with torch.no_grad():
        for lr, hr in data:
            out = model(torch.from_numpy(lr)[None, None])[0, 0].numpy()
            a, b = np.round(out.clip(0, 1) * 255)[scale:-scale, scale:-scale], np.round(hr * 255)[scale:-scale, scale:-scale]
            values.append(10 * math.log10(255 ** 2 / max(np.mean((a - b) ** 2), 1e-9)))
    return float(np.mean(values))


def train(kind: str, scales: tuple[int, ...], minutes: float, data: Path, start_from: Path | None = None,
          seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    paths = photos(data)
    held = paths[::20]
    train_pairs = {s: pairs([p for p in paths if p not in held], s) for s in scales}
    held_pairs = {s: pairs(held[:8], s)[::2] for s in scales}
    print(f"{kind} x{scales}: {len(train_pairs[scales[0]])} training images per scale", flush=True)
    model = ESPCN(scales[0]) if kind == "ESPCN" else SRCNN(scales[0])
    rate = 1e-3 if kind == "ESPCN" else 3e-4
    if start_from is not None:
        resume(model, start_from)
        rate /= 3

    def batch_loss(step: int) -> torch.Tensor:
        model.scale = scale = scales[step % len(scales)]
        patch = LR_PATCH if kind == "ESPCN" else HR_PATCH // scale
        lr, hr = batch(train_pairs[scale], scale, patch, 32, rng)
        return nn.functional.mse_loss(model(lr), hr)

    def held_out() -> str:
        figures = []
        for s in scales:
            model.scale = s
            figures.append(f"x{s} {psnr_y(model.eval(), held_pairs[s], s):.2f} dB")
        return ", held-out " + ", ".join(figures)

    return train_for(model, minutes, rate, batch_loss, 1000, held_out)


def export(model: nn.Module, kind: str, scale: int, out: Path) -> Path:
    model.scale = scale
    path = out / f"sr_{kind.lower()}_x{scale}.onnx"
    torch.onnx.export(model, torch.rand(1, 1, 32, 32), str(path), input_names=["y"], output_names=["y_hr"],
                      opset_version=17, dynamic_axes={"y": {2: "h", 3: "w"}, "y_hr": {2: "H", 3: "W"}}, dynamo=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "eval")
    parser.add_argument("--minutes", type=float, default=12.0, help="training time per model")
    parser.add_argument("--out", type=Path, default=ROOT / "imgrec" / "engines" / "weights")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="continue from the networks already in --out")
    parser.add_argument("--only", default="", help="ESPCN3, ESPCN4 or SRCNN34: train just that one; SRCNN3 or SRCNN4 "
                                                   "(only when named): SRCNN on one scale's batches alone, resumed "
                                                   "from SRCNN34's export for that scale")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    # ESPCN's last layer is per scale (r^2 channels): one network per scale. SRCNN34 serves both (SRCNN3/4 refine).
    for kind, scales in (("ESPCN", (3,)), ("ESPCN", (4,)), ("SRCNN", (3, 4)), ("SRCNN", (3,)), ("SRCNN", (4,))):
        name = kind + "".join(map(str, scales))
        if (args.only and args.only != name) or (name in ("SRCNN3", "SRCNN4") and args.only != name):
            continue
        start_from = args.out / f"sr_{kind.lower()}_x{scales[0]}.onnx" if args.resume else None
        model = train(kind, scales, args.minutes * len(scales), args.data, start_from)
        for scale in scales:
            print("exported", export(model, kind, scale, args.out), flush=True)


if __name__ == "__main__":
    main()
