"""Capture points: which module outputs a run records, their shapes, and how each is
reduced before it is stored.

A capture point is a module path of the model (`relu2`, `layer1.0`), or `input` (the
model's input) or `logits` (its output). The penultimate point, whose output feeds the
head (the last layer), is always captured: the edit needs it. The head and the
penultimate point are named by the config, else by the model's `head_name` and
`penultimate` attributes (the built-in models have them), else found (`find_head`,
`find_penultimate`).
"""

from __future__ import annotations

import torch
from torch import nn

from stores import LayerSpec

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


def find_head(model: nn.Module, head: str | None = None) -> str:
    """The module path of the model's head, its last layer (which the edit replaces).

    Parameters
    ----------
    model : torch.nn.Module
        The run's model.
    head : str or None, default None
        The head as the config names it; None: the model's `head_name` attribute if it
        has one, else its last `nn.Linear` (in definition order).

    Returns
    -------
    str
        A module path of `model`.

    Raises
    ------
    ValueError
        For a named head that is not a module of `model`, or a model without a linear layer.
    """
    modules = dict(model.named_modules())
    if head is None:
        head = _named_attribute(model, "head_name")
    if head is None:
        linear = [name for name, m in modules.items() if name and isinstance(m, nn.Linear)]
        if not linear:
            raise ValueError(f"head: {type(model).__name__} has no nn.Linear: expected the "
                             "head named (model.head: a module path)")
        return linear[-1]
    if not head or head not in modules:
        raise ValueError(f"head: expected a module path of {type(model).__name__} "
                         f"({', '.join(n for n in modules if n)}), got {head!r}")
    return head


def _named_attribute(model: nn.Module, name: str) -> str | None:
    """The model's attribute `name` when it is a string (a module called `penultimate` is not)."""
    value = getattr(model, name, None)
    return value if isinstance(value, str) else None


def _first_device(model: nn.Module) -> torch.device:
    """Where the model's parameters (else buffers) are; the CPU for a model with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.inference_mode()
def _outputs_before_head(model: nn.Module, sample_batch: torch.Tensor,
                         head: str) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor]:
    """Every named module's output computed before the head's first call, in call order,
    and the head's input, from one forward in eval mode."""
    seen: list[tuple[str, torch.Tensor]] = []
    head_input: list[torch.Tensor] = []

    def keep(name, output):
        if not head_input and isinstance(output, torch.Tensor):
            seen.append((name, output.clone()))  # as it was: a later in-place op may change it

    modules = dict(model.named_modules())
    hooks = [modules[head].register_forward_pre_hook(
        lambda mod, args: head_input.append(args[0]) if not head_input else None)]
    hooks += [m.register_forward_hook(lambda mod, i, o, n=name: keep(n, o))
              for name, m in modules.items() if name and name != head]
    was_training = model.training
    model.eval()
    try:
        model(sample_batch.to(_first_device(model)))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    if not head_input:
        raise ValueError(f"head: {head!r} is not called in a forward pass of the model")
    return seen, head_input[0]


def find_penultimate(model: nn.Module, sample_batch: torch.Tensor, head: str,
                     penultimate: str | None = None) -> str:
    """The capture point whose (flattened) output is the head's input.

    Parameters
    ----------
    model : torch.nn.Module
        The run's model.
    sample_batch : torch.Tensor
        A few inputs, for one forward pass in eval mode when the point is searched for
        (`sample_batch` makes one from an input shape).
    head : str
        The head's module path (`find_head`).
    penultimate : str or None, default None
        The point as the config names it; None: the model's `penultimate` attribute if it
        has one, else the last module (not the head, not a module holding it, not the
        model itself) whose flattened output equals the head's input; `input` when only
        the model's input does.

    Returns
    -------
    str
        A capture point of `model` (`capture_point_names`).

    Raises
    ------
    ValueError
        Naming `penultimate:`, for a named point that is not a capture point, or when no
        module's output is the head's input.
    """
    if penultimate is None:
        penultimate = _named_attribute(model, "penultimate")
    if penultimate is not None:
        allowed = capture_point_names(model)[:-1]  # not logits: the head's own output
        if penultimate not in allowed:
            raise ValueError(f"penultimate: expected a capture point of {type(model).__name__} "
                             f"({', '.join(allowed)}), got {penultimate!r}")
        return penultimate
    seen, head_input = _outputs_before_head(model, sample_batch, head)
    wanted = head_input.flatten(1)
    holders = {name for name, _ in seen if head.startswith(f"{name}.")}
    for name, output in reversed(seen):
        if name not in holders and _same_rows(output, wanted):
            return name
    if _same_rows(sample_batch.to(wanted.device), wanted):
        return "input"
    raise ValueError(f"penultimate: no module's output is the input of the head {head!r} "
                     "(its input is computed inside a module's forward): expected "
                     "model.penultimate named (a module path)")


def _same_rows(output: torch.Tensor, flat: torch.Tensor) -> bool:
    """Whether `output`, flattened per sample, is exactly `flat`."""
    return (output.shape[:1] == flat.shape[:1] and output[0].numel() == flat.shape[1]
            and output.dtype == flat.dtype and torch.equal(output.reshape(flat.shape), flat))


def sample_batch(in_shape: tuple[int, ...], n: int = 4) -> torch.Tensor:
    """`n` standard normal inputs of shape `in_shape` for `find_penultimate`'s forward pass,
    drawn from a generator of their own (the global random state is left as it is).

    Parameters
    ----------
    in_shape : tuple of int
        The shape of one input sample.
    n : int, default 4
        Samples in the batch.

    Returns
    -------
    torch.Tensor of shape (n, *in_shape), float32, on the CPU
    """
    return torch.randn(n, *in_shape, generator=torch.Generator().manual_seed(0))


def resolve_points(model: nn.Module, requested: tuple[str, ...], penultimate: str) -> list[str]:
    """The requested capture points in forward order, plus the penultimate one.

    Parameters
    ----------
    model : torch.nn.Module
        The run's model.
    requested : tuple of str
        The pipeline's `capture.points`.
    penultimate : str
        The penultimate point (`find_penultimate`), always captured.

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
    wanted = set(requested) | {penultimate}
    return [name for name in allowed if name in wanted]


@torch.inference_mode()
def output_shapes(model: nn.Module, in_shape: tuple[int, ...], *,
                  sample: torch.Tensor | None = None) -> dict[str, tuple[int, ...]]:
    """The per-sample output shape of every capture point, from one forward pass in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        The run's model, on any device (the dry run happens there).
    in_shape : tuple of int
        The shape of one input sample.
    sample : torch.Tensor or None, default None
        Inputs for the dry run (its first sample is used): for a model whose inputs are
        not float (token ids); None: one sample of zeros.

    Returns
    -------
    dict of str to tuple of int
        Capture point name -> output shape of one sample, `input` and `logits` included;
        a module that returns no tensor, or is not called, has none.
    """
    shapes: dict[str, tuple[int, ...]] = {"input": tuple(in_shape)}

    def keep(name, output):
        if isinstance(output, torch.Tensor):
            shapes[name] = tuple(output.shape[1:])

    hooks = [m.register_forward_hook(lambda mod, i, o, n=name: keep(n, o))
             for name, m in model.named_modules() if name]
    was_training = model.training
    model.eval()
    try:
        device = _first_device(model)  # on CUDA the dry run must be there too
        x = torch.zeros(1, *in_shape) if sample is None else sample[:1]
        shapes["logits"] = tuple(model(x.to(device)).shape[1:])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return shapes


def capture_layers(model: nn.Module, points: list[str], in_shape: tuple[int, ...],
                   reductions: dict[str, str], projection_seed: int, device: torch.device,
                   penultimate: str, *, sample: torch.Tensor | None = None,
                   ) -> tuple[list[LayerSpec], dict]:
    """Each capture point's reduction, original shape and stored width.

    Parameters
    ----------
    model : torch.nn.Module
        The run's model.
    points : list of str
        The capture points, as `resolve_points` returns them.
    in_shape : tuple of int
        The shape of one input sample.
    reductions : dict of str to str
        Point name -> reduction (`capture.reductions`); a point left out is `flatten`.
    projection_seed : int
        The run's `capture.projection_seed`, from which each projection's seed derives.
    device : torch.device
        Where the reducers work (a projection matrix is drawn there at the first capture).
    penultimate : str
        The penultimate point (`find_penultimate`), marked as such in its LayerSpec.
    sample : torch.Tensor or None, default None
        Inputs for the dry run (`output_shapes`).

    Returns
    -------
    layers : list of stores.LayerSpec
        One per point, in `points` order: what the store lays out.
    reducers : dict of str to capture.reduce.Reducer
        Point name -> the reduction applied to its output before the copy.

    Raises
    ------
    ValueError
        When the penultimate point is given a reduction other than `flatten`, or a point
        gives no tensor in a forward pass.
    """
    shapes = output_shapes(model, tuple(in_shape), sample=sample)
    layers, reducers = [], {}
    for point in points:
        if point not in shapes:
            raise ValueError(f"capture.points: {point!r} gives no tensor in a forward pass in "
                             "eval mode (it returns a tuple, or is not called): expected a "
                             "module whose output is one tensor")
        spec = reductions.get(point, "flatten")
        if point == penultimate and spec != "flatten":
            raise ValueError(f"capture.reductions.{point}: the penultimate point feeds the "
                             f"last layer and must stay flatten, got {spec!r}")
        reduction = parse(spec, point, projection_seed)
        reducers[point] = Reducer(reduction, shapes[point], device, point)
        units = reducers[point].units  # by formula: a projection is drawn at the first capture
        layers.append(LayerSpec(point, int(units), shapes[point], reduction.spec,
                                point == penultimate, reduction.seed))
    return layers, reducers
