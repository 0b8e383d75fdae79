"""What the torch training scripts share: a time-budgeted Adam loop, and `--resume` from an exported network."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn


def train_for(model: nn.Module, minutes: float, rate: float, batch_loss: Callable[[int], torch.Tensor],
              log_every: int = 200, progress: Callable[[], str] | None = None) -> nn.Module:
    """Adam over a wall-clock budget, the learning rate decaying from `rate` to 2% of it on a cosine;
    `batch_loss(step)` draws a batch and returns its loss; `progress()` adds to the log line."""
    optimiser = torch.optim.Adam(model.parameters(), lr=rate)
    start, budget, step = time.time(), minutes * 60, 0
    while (elapsed := time.time() - start) < budget:
        optimiser.param_groups[0]["lr"] = rate * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
        loss = batch_loss(step)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if step % log_every == 0:
            extra = progress() if progress else ""
            print(f"  step {step} ({elapsed / 60:.1f} min) loss {loss.item():.5f}{extra}", flush=True)
            model.train()
    return model.eval()


def resume(model: nn.Module, path: Path) -> None:
    """Start from the weights of an exported network (another learning-rate cycle: a longer training in parts)."""
    import onnx
    from onnx import numpy_helper

    weights = {init.name: torch.from_numpy(numpy_helper.to_array(init).copy())
               for init in onnx.load(str(path)).graph.initializer}
    model.load_state_dict({name: weights[name] for name in model.state_dict()})
    print(f"resumed from {path}", flush=True)
