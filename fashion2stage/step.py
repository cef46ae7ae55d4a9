"""One optimisation step as :class:`fashion2stage.fit_settings.FitSettings` asks: the forward pass under
``torch.autocast`` (bf16, or fp16 with a ``GradScaler`` whose loss scaling keeps small fp16 gradients from
flushing to zero), the gradients' L2 norm cut to ``clip_grad``, the optimizer step, and the exponential moving
average of the weights (``torch.optim.swa_utils.AveragedModel``) updated after it.
"""
from __future__ import annotations

import math
from contextlib import AbstractContextManager

import torch

from fashion2stage.fit_settings import FitSettings


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``amp`` means on ``device`` (None: float32 throughout)."""
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


class Stepper:
    """Holds what outlives a step: the loss scaler (fp16) and the averaged weights (``settings.ema``).

    ``model`` is the unwrapped network the optimizer steps; ``averaged`` is what validation and the saved weights
    read: the moving average when there is one, else ``model`` itself.
    """

    def __init__(self, settings: FitSettings, model: torch.nn.Module, device: torch.device):
        self.device_type = device.type
        self.dtype = amp_dtype(settings.amp, device)
        self.clip = settings.clip_grad
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype == torch.float16 else None
        self.model = model
        self.ema = None
        if settings.ema is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn  # noqa: PLC0415
            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema), use_buffers=True)

    def describe(self) -> str:
        amp = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16 (loss scaling)"}[self.dtype]
        cut = f"cut to {self.clip}" if self.clip is not None else "not cut"
        return f"autocast {amp}, gradient norm {cut}, EMA of weights " + ("on" if self.ema is not None else "off")

    @property
    def averaged(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        """Backward, cut, step, average; returns the gradients' L2 norm before the cut."""
        optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        # without a cut the gradients are multiplied by exactly 1.0: the step is the one an unclipped loop takes
        norm = float(torch.nn.utils.clip_grad_norm_(params, self.clip if self.clip is not None else math.inf))
        if self.scaler is not None:
            self.scaler.step(optimizer)  # skipped when the scaled gradients overflowed; the scale then shrinks
            self.scaler.update()
        else:
            optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return norm

    def state_dict(self) -> dict:
        return {**({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
                **({"ema": self.ema.state_dict()} if self.ema is not None else {})}

    def load_state_dict(self, state: dict) -> None:
        """From a checkpoint's entries; one written without a scaler or an average leaves them as they start."""
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
