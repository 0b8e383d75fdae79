"""The image-out engines against a known answer: scikit-image photos degraded as the benchmarks degrade theirs
(MATLAB bicubic for super-resolution, a short exposure with sensor noise, haze by the scattering model), each
restoration compared with the untouched photo. bench/quality.py measures the same on the public benchmarks."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from imgrec.engines.dark_enhance import enhance
from imgrec.engines.defog import defog
from imgrec.engines.super_resolution import rgb_to_ycbcr, super_resolve
from tests.helpers import photo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from matlab_resize import imresize, to_uint8  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def y_psnr(a: np.ndarray, b: np.ndarray, shave: int) -> float:
    ya, yb = (np.round(rgb_to_ycbcr(x)[..., 0] * 255)[shave:-shave, shave:-shave] for x in (a, b))
    return psnr(ya, yb)


@pytest.mark.parametrize("model", ["ESPCN", "SRCNN"])
@pytest.mark.parametrize("scale", [3, 4])
def test_super_resolution_beats_bicubic(model, scale):
    hr = photo("astronaut")[96:96 + 192, 96:96 + 192]  # a face, hair and the flag's edges
    lr = to_uint8(imresize(hr, 1 / scale))
    bicubic = to_uint8(imresize(lr, scale))
    ours = super_resolve(lr, model, scale)
    assert ours.shape == hr.shape and ours.dtype == np.uint8
    assert y_psnr(ours, hr, scale) > y_psnr(bicubic, hr, scale) + 0.5


def short_exposure(rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    """About 1/8 of the light, a gamma, shot and read noise, 8 bits: a dark phone photo."""
    rng = np.random.default_rng(seed)
    dark = (rgb.astype(np.float32) / 255) ** 1.2 * 0.12
    dark = dark + rng.standard_normal(dark.shape).astype(np.float32) * np.sqrt(dark * 5e-4 + 4e-6)
    return to_uint8(np.clip(dark, 0, 1) * 255)


def test_low_light_restores_a_dark_photo_and_leaves_a_bright_one():
    clean = photo("chelsea")
    dark = short_exposure(clean)
    restored = enhance(dark, 0.9)
    assert psnr(restored, clean) > psnr(dark, clean) + 6
    assert psnr(enhance(clean, 0.9), clean) > 22  # a well-exposed photo is not blown out
    assert np.array_equal(enhance(dark, 0.0), dark)  # brightness 0: no change
    assert dark.mean() < enhance(dark, 0.4).mean() < restored.mean() < enhance(dark, 1.0).mean()


def hazy(rgb: np.ndarray) -> np.ndarray:
    """Haze by the scattering model, thicker towards the top (farther), airlight 0.85."""
    clean = rgb.astype(np.float32) / 255
    depth = np.linspace(1.2, 0.3, clean.shape[0], dtype=np.float32)[:, None, None]
    t = np.exp(-1.2 * depth)
    return to_uint8((clean * t + 0.85 * (1 - t)) * 255)


def test_defog_restores_haze_and_gamma_and_natural_look_mean_what_they_say():
    clean = photo("coffee")
    foggy = hazy(clean)
    restored = defog(foggy, 1.5, True)
    assert psnr(restored, clean) > psnr(foggy, clean) + 4
    assert psnr(defog(clean, 1.5, True), clean) > 20  # a clear photo stays close to itself
    assert defog(foggy, 3.0, True).mean() > restored.mean() > defog(foggy, 0.75, True).mean()
    assert foggy.std() < restored.std() < defog(foggy, 1.5, False).std()  # false removes more haze: more contrast
