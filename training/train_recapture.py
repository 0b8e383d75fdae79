"""Train the recapture classifier on synthesised recaptures; save numpy weights; report held-out accuracy.

    python training/train_recapture.py [--train 1200] [--test 300]

Plain numpy (no torch needed): a 32-unit tanh MLP with Adam and weight decay on standardised features.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import recapture_data  # noqa: E402

OUT = Path(__file__).parents[1] / "imgrec" / "engines" / "weights" / "recapture_mlp.npz"


def train_mlp(x: np.ndarray, y: np.ndarray, hidden: int = 16, epochs: int = 1500, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    params = {"w1": rng.normal(0, 1 / np.sqrt(z.shape[1]), (z.shape[1], hidden)), "b1": np.zeros(hidden),
              "w2": rng.normal(0, 1 / np.sqrt(hidden), (hidden, 1)), "b2": np.zeros(1)}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(val) for k, val in params.items()}
    lr, decay = 0.01, 3e-2  # strong decay: few hundred samples, ~50 features
    for step in range(1, epochs + 1):
        h = np.tanh(z @ params["w1"] + params["b1"])
        p = 1 / (1 + np.exp(-(h @ params["w2"] + params["b2"]).reshape(-1)))
        g_logit = (p - y)[:, None] / len(y)
        grads = {"w2": h.T @ g_logit + decay * params["w2"], "b2": g_logit.sum(axis=0)}
        g_h = g_logit @ params["w2"].T * (1 - h ** 2)
        grads["w1"] = z.T @ g_h + decay * params["w1"]
        grads["b1"] = g_h.sum(axis=0)
        for k in params:
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
            params[k] -= lr * (m[k] / (1 - 0.9 ** step)) / (np.sqrt(v[k] / (1 - 0.999 ** step)) + 1e-8)
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32),
            **{k: val.astype(np.float32) for k, val in params.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=1600)
    parser.add_argument("--test", type=int, default=300)
    args = parser.parse_args()
    started = time.time()
    x, y, _ = recapture_data.dataset(recapture_data.TRAIN, args.train, seed=1)
    print(f"train set {len(y)} in {time.time() - started:.0f}s", flush=True)
    params = train_mlp(x, y)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez(OUT, **params)
    from imgrec.engines.recapture_features import Classifier

    clf = Classifier(params)
    xt, yt, kinds = recapture_data.dataset(recapture_data.HELD_OUT, args.test, seed=2)
    p = clf.probability(xt)
    accuracy = float(((p >= 0.5) == yt).mean())
    by_kind = {k: float(((p[np.array(kinds) == k] >= 0.5) == yt[np.array(kinds) == k]).mean())
               for k in ("genuine", "screen", "print")}
    print(f"train accuracy {float(((clf.probability(x) >= 0.5) == y).mean()):.3f}")
    print(f"held-out accuracy {accuracy:.3f} on {len(yt)} samples; by kind {by_kind}")
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
