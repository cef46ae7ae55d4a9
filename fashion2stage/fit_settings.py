"""How :func:`fashion2stage.engine.fit` takes its optimisation steps: the settings every torch train command shares.

Each train command's config dataclass inherits them, so they have one default, are saved with the other settings
in the run folder's ``config.json`` (``"train"``) and are read back on ``--resume``. No torch import here: the
command line reads these defaults at start-up.
"""
from __future__ import annotations

from dataclasses import dataclass

AMP_CHOICES = ("auto", "off", "bf16", "fp16")


@dataclass(kw_only=True)
class FitSettings:
    # mixed precision of the training forward pass: "auto" is bf16 on CUDA (fp16 with loss scaling where the GPU
    # lacks bf16) and off on the CPU, where autocast is slower than float32; "bf16" / "fp16" force it anywhere
    amp: str = "auto"
    # the L2 norm of all gradients is cut to this before each step (None: never, the default). Not on by default:
    # on the tiny test sets Faster R-CNN's first steps have norms of 10-26 and the attribute heads' 25-130, so a
    # common cut like ultralytics' 10 would change the recipes whose results BENCHMARKS.md reports. Every epoch's
    # row has the mean norm (train_grad_norm), to choose a cut from real runs; and, with a cut, train_clipped
    clip_grad: float | None = None
    # decay of an exponential moving average of the weights, validated and saved in their place (None: off)
    ema: float | None = None

    def __post_init__(self):
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"amp must be one of {AMP_CHOICES}, got {self.amp!r}")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise ValueError(f"clip_grad must be a positive gradient norm or None, got {self.clip_grad!r}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ValueError(f"ema must be a decay between 0 and 1 or None, got {self.ema!r}")
