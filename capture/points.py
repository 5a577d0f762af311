"""Capture points: which module outputs a run records, their shapes, and how each is
reduced before it is stored.

A capture point is a module path of the model (`relu2`, `layer1.0`), or `input` (the
model's input) or `logits` (its output). The penultimate point, whose output feeds the
last layer, is always captured: the edit needs it.
"""

from __future__ import annotations

import torch
from torch import nn

from stores import LayerSpec, RunConfig

from .reduce import Reducer, parse


def capture_point_names(model: nn.Module) -> list[str]:
    """Every name a pipeline may list under `capture.points`.

    Parameters
    ----------
    model : torch.nn.Module
        The run's model.

    Returns
    -------
    list of str
        `input`, every named module in definition order, then `logits`.
    """
    return ["input", *(name for name, _ in model.named_modules() if name), "logits"]


def resolve_points(model: nn.Module, requested: tuple[str, ...]) -> list[str]:
    """The requested capture points in forward order, plus the penultimate one.

    Parameters
    ----------
    model : torch.nn.Module
        The run's model, with its `penultimate` point named.
    requested : tuple of str
        The pipeline's `capture.points`.

    Returns
    -------
    list of str
        The points to capture, in the order of `capture_point_names`.

    Raises
    ------
    ValueError
        For a name that is not a capture point of `model`.
    """
    allowed = capture_point_names(model)
    for name in requested:
        if name not in allowed:
            raise ValueError(
                f"capture.points: unknown {name!r}: expected names from {', '.join(allowed)}"
            )
    wanted = set(requested) | {model.penultimate}
    return [name for name in allowed if name in wanted]


@torch.inference_mode()
def output_shapes(model: nn.Module, in_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The per-sample output shape of every capture point, from one forward pass in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        The run's model, on any device (the dry run happens there).
    in_shape : tuple of int
        The shape of one input sample.

    Returns
    -------
    dict of str to tuple of int
        Capture point name -> output shape of one sample, `input` and `logits` included.
    """
    shapes: dict[str, tuple[int, ...]] = {"input": tuple(in_shape)}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=name: shapes.__setitem__(n, tuple(o.shape[1:])))
             for name, m in model.named_modules() if name]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device  # on CUDA the dry run must be there too
        shapes["logits"] = tuple(model(torch.zeros(1, *in_shape, device=device)).shape[1:])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return shapes


def capture_layers(model: nn.Module, points: list[str], in_shape: tuple[int, ...],
                   config: RunConfig, device: torch.device) -> tuple[list[LayerSpec], dict]:
    """Each capture point's reduction, original shape and stored width.

    Parameters
    ----------
    model : torch.nn.Module
        The run's model.
    points : list of str
        The capture points, as `resolve_points` returns them.
    in_shape : tuple of int
        The shape of one input sample.
    config : stores.RunConfig
        The run (its `capture.reductions` and `capture.projection_seed`).
    device : torch.device
        Where the reducers work (a projection matrix is drawn there at the first capture).

    Returns
    -------
    layers : list of stores.LayerSpec
        One per point, in `points` order: what the store lays out.
    reducers : dict of str to capture.reduce.Reducer
        Point name -> the reduction applied to its output before the copy.

    Raises
    ------
    ValueError
        When the penultimate point is given a reduction other than `flatten`.
    """
    shapes = output_shapes(model, tuple(in_shape))
    layers, reducers = [], {}
    for point in points:
        spec = config.capture.reductions.get(point, "flatten")
        if point == model.penultimate and spec != "flatten":
            raise ValueError(f"capture.reductions.{point}: the penultimate point feeds the "
                             f"last layer and must stay flatten, got {spec!r}")
        reduction = parse(spec, point, config.capture.projection_seed)
        reducers[point] = Reducer(reduction, shapes[point], device)
        units = reducers[point].units  # by formula: a projection is drawn at the first capture
        layers.append(LayerSpec(point, int(units), shapes[point], reduction.spec,
                                point == model.penultimate, reduction.seed))
    return layers, reducers
