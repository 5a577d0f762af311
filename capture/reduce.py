"""Reductions of a capture point's output, applied on the device before the copy.

`flatten` keeps everything; `avgpool` averages each channel over space; `pool:K`
averages to K x K cells (adaptive); `project:D` is a seeded Gaussian random projection
of the flattened output to D units, R with entries N(0, 1/D), which keeps inner
products and angles within the Johnson-Lindenstrauss distortion sqrt(8 ln n / D);
`tokens:mean`, `tokens:last`, `tokens:first` and `tokens:max` take an output with a token
axis, (batch, tokens, units), to (batch, units): the mean over tokens, the last or first
token, or the largest value of each unit over tokens.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stores.config import REDUCTION_KINDS, REDUCTIONS, SIZED_REDUCTION_KINDS, TOKEN_REDUCTIONS


class ReductionError(ValueError):
    """A reduction that is not one of `stores.config.REDUCTIONS`, or that does not fit
    its capture point's output."""


@dataclass(frozen=True)
class Reduction:
    """One capture point's reduction, as `parse` reads it.

    Attributes
    ----------
    kind : str
        flatten, avgpool, pool, project or tokens.
    size : int
        K of `pool:K`, D of `project:D`; 0 for the others.
    seed : int or None
        The projection's seed (project only), stored with the layer.
    mode : str
        tokens only: one of `stores.config.TOKEN_REDUCTIONS`; "" for the others.
    """

    kind: str
    size: int = 0  # K for pool, D for project
    seed: int | None = None  # project only: the projection's seed, stored with the layer
    mode: str = ""  # tokens only: mean, last, first or max

    @property
    def spec(self) -> str:
        """The reduction as a pipeline writes it: `flatten`, `pool:4`, `tokens:mean`."""
        if self.mode:
            return f"{self.kind}:{self.mode}"
        return self.kind if not self.size else f"{self.kind}:{self.size}"


def parse(spec: str, layer: str = "", seed: int = 0) -> Reduction:
    """Read a reduction: `pool:4` -> Reduction("pool", 4).

    A projection's seed is derived from the run's projection seed and the layer name,
    so every layer gets its own matrix.

    Parameters
    ----------
    spec : str
        One of `stores.config.REDUCTIONS`.
    layer : str, default ""
        The capture point it applies to (for the seed and the error message).
    seed : int, default 0
        The run's `capture.projection_seed`.

    Returns
    -------
    Reduction

    Raises
    ------
    ReductionError
        For anything else.
    """
    kind, _, size = str(spec).partition(":")
    if kind in REDUCTION_KINDS and not size:
        return Reduction(kind)
    if kind == "tokens" and size in TOKEN_REDUCTIONS:
        return Reduction(kind, mode=size)
    if kind in SIZED_REDUCTION_KINDS and size.isdigit() and int(size) > 0:
        layer_seed = (seed * 1_000_003 + zlib.crc32(layer.encode())) % 2**31 if kind == "project" else None
        return Reduction(kind, int(size), layer_seed)
    raise ReductionError(f"capture.reductions.{layer}: expected {REDUCTIONS}, got {spec!r}")


class Reducer:
    """Applies one Reduction to a capture point's output (a batch, on the device).

    A projection matrix is drawn on the first call (not when a run is only estimated:
    ResNet-18's 16384 x 2048 matrices cost a second each) and then kept on the device.

    Parameters
    ----------
    reduction : Reduction
        What to apply.
    sample_shape : tuple of int
        The point's output shape for one sample; avgpool and pool need (C, H, W).
    device : torch.device
        Where the projection matrix lives.
    point : str, default ""
        The capture point, for the messages.

    Attributes
    ----------
    matrix : torch.Tensor or None
        The projection (n_in, D), once drawn.
    """

    def __init__(self, reduction: Reduction, sample_shape: tuple[int, ...], device: torch.device,
                 point: str = ""):
        self.reduction = reduction
        self.sample_shape = tuple(sample_shape)
        self.device = device
        self.matrix = None
        where = f"capture.reductions.{point}: " if point else ""
        if reduction.kind in ("avgpool", "pool") and len(sample_shape) != 3:
            raise ReductionError(f"{where}{reduction.spec}: expected a (C, H, W) map, got shape "
                                 f"{self.sample_shape}")
        if reduction.kind == "tokens" and len(sample_shape) != 2:
            raise ReductionError(f"{where}{reduction.spec}: expected an output (batch, tokens, "
                                 f"units), got one sample of shape {self.sample_shape}")

    @property
    def units(self) -> int:
        """Stored width per sample: what `__call__` returns, known without running it."""
        kind, size = self.reduction.kind, self.reduction.size
        if kind == "avgpool":
            return self.sample_shape[0]
        if kind == "pool":
            return self.sample_shape[0] * size * size
        if kind == "tokens":
            return self.sample_shape[1]
        return size if kind == "project" else math.prod(self.sample_shape)

    def _projection(self) -> torch.Tensor:
        if self.matrix is None:
            n_in = math.prod(self.sample_shape)
            gen = torch.Generator().manual_seed(self.reduction.seed)
            matrix = torch.randn(n_in, self.reduction.size, generator=gen) / self.reduction.size ** 0.5
            self.matrix = matrix.to(self.device)
        return self.matrix

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        kind = self.reduction.kind
        if kind == "avgpool":
            return out.mean(dim=(2, 3))
        if kind == "pool":
            return F.adaptive_avg_pool2d(out, self.reduction.size).flatten(1)
        if kind == "tokens":
            return _over_tokens(out, self.reduction.mode)
        flat = out.flatten(1)
        return flat @ self._projection().to(flat.dtype) if kind == "project" else flat


def _over_tokens(out: torch.Tensor, mode: str) -> torch.Tensor:
    """(batch, tokens, units) -> (batch, units)."""
    if mode == "mean":
        return out.mean(dim=1)
    if mode == "max":
        return out.amax(dim=1)
    return out[:, -1] if mode == "last" else out[:, 0]
