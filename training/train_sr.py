"""Train the super-resolution models the service ships (ESPCN and SRCNN, x3 and x4) and export ONNX.

    python training/train_sr.py [--minutes 3] [--out imgrec/engines/weights]

Needs torch (a training-only dependency: `pip install torch==2.13.0 scikit-image onnx opencv-python-headless`).
Both networks work on luminance (Y of YCbCr) as in their papers; the engine upscales chroma bicubically.
- ESPCN (Shi et al. 2016): conv5x5(64) tanh, conv3x3(32) tanh, conv3x3(r^2), pixel shuffle; input = low-res Y.
- SRCNN (Dong et al. 2014), 9-5-5: conv9x9(64) relu, conv5x5(32) relu, conv5x5(1); input = bicubic-upscaled Y.
Both are trained to predict the residual over bicubic, which converges far faster on a CPU budget.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import sr_data  # noqa: E402


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

    def forward(self, upscaled):  # bicubic-upscaled Y -> refined Y
        return upscaled + self.body(upscaled)


def train(kind: str, scale: int, minutes: float, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = ESPCN(scale) if kind == "ESPCN" else SRCNN(scale)
    lr_np, hr_np = sr_data.patches(sr_data.TRAIN, scale, 24, 12000, seed)
    lr, hr = torch.from_numpy(lr_np), torch.from_numpy(hr_np)
    if kind == "SRCNN":
        lr = nn.functional.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    deadline = time.time() + minutes * 60
    step = 0
    while time.time() < deadline:
        idx = torch.randint(0, len(lr), (64,))
        loss = nn.functional.mse_loss(model(lr[idx]), hr[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if time.time() > deadline - minutes * 60 * 0.3:  # the last 30% of the budget at a lower rate
            for group in optimiser.param_groups:
                group["lr"] = 2e-4
        if step % 500 == 0:
            print(f"{kind} x{scale} step {step} loss {loss.item():.6f}", flush=True)
    return model.eval()


def export(model: nn.Module, kind: str, scale: int, out: Path) -> Path:
    path = out / f"sr_{kind.lower()}_x{scale}.onnx"
    size = 32 if kind == "ESPCN" else 32 * scale
    example = torch.rand(1, 1, size, size)
    torch.onnx.export(model, example, str(path), input_names=["y"], output_names=["y_hr"], opset_version=17,
                      dynamic_axes={"y": {2: "h", 3: "w"}, "y_hr": {2: "H", 3: "W"}}, dynamo=False)
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def evaluate(model: nn.Module, kind: str, scale: int) -> None:
    for name in sr_data.HELD_OUT:
        lr, hr = sr_data.degrade(sr_data.luminance(sr_data.load(name)), scale)
        base = sr_data.bicubic(lr, (hr.shape[1], hr.shape[0]))
        x = torch.from_numpy(lr if kind == "ESPCN" else base)[None, None]
        with torch.no_grad():
            out = model(x)[0, 0].numpy().clip(0, 1)
        b = scale + 2  # ignore borders as the papers do
        print(f"  {name}: {kind} x{scale} PSNR {psnr(out[b:-b, b:-b], hr[b:-b, b:-b]):.2f} dB, "
              f"bicubic {psnr(base[b:-b, b:-b], hr[b:-b, b:-b]):.2f} dB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "imgrec" / "engines" / "weights")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in ("ESPCN", "SRCNN"):
        for scale in (3, 4):
            if args.only and args.only != f"{kind}{scale}":
                continue
            model = train(kind, scale, args.minutes)
            evaluate(model, kind, scale)
            print("exported", export(model, kind, scale, args.out), flush=True)


if __name__ == "__main__":
    main()
