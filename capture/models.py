"""The models of a run: the built-in ones, with named capture points, or any nn.Module
that a config's `model.factory` (`package.module:function`) builds, with weights from a
local file.

A built-in model names its final linear layer (`head_name`) and the capture point whose
output feeds it (`penultimate`), which capture always records because the edit needs it;
for other models the config names them or capture finds them (`capture.points`). Capture
points are module paths, plus `input` and `logits`.
"""

from __future__ import annotations

import importlib
import math
import pickle
from collections import OrderedDict

import torch
from torch import nn

from stores.config import ConfigError, ModelConfig


class MLP(nn.Sequential):
    """flatten -> [Linear -> ReLU] * len(widths) -> Linear (the head).

    Modules are named `flatten, fc1, relu1, fc2, relu2, ..., head`, so capture points
    read `relu2` rather than `layers.3`. Each ReLU is its own module (not in place) so a
    forward hook sees exactly that layer's output.
    """

    head_name = "head"

    def __init__(self, in_features: int, widths: tuple[int, ...], n_classes: int):
        modules: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        dims = [in_features, *widths]
        for i, (n_in, n_out) in enumerate(zip(dims, dims[1:]), start=1):
            modules[f"fc{i}"] = nn.Linear(n_in, n_out)
            modules[f"relu{i}"] = nn.ReLU()
        modules[self.head_name] = nn.Linear(dims[-1], n_classes)
        super().__init__(modules)
        self.penultimate = f"relu{len(widths)}" if widths else "input"


class Square(nn.Module):
    """x ↦ x², the activation of the modular-arithmetic network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class ModularMLP(nn.Sequential):
    """one-hot(m) ‖ one-hot(n) -> embed (no bias) -> [dropout] -> x² -> [BatchNorm] -> head.

    Both linear layers have no bias and start from N(0, σ²) with σ² = (16N)^(-2/3)
    (Doshi et al. 2023). Dropout acts on the first layer's output, before the square;
    the penultimate capture point is the hidden representation after the square (and
    after BatchNorm when present): the input of the head.
    """

    head_name = "head"

    def __init__(self, in_features: int, width: int, n_classes: int, *,
                 batchnorm: bool = False, dropout: float = 0.0):
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        modules["embed"] = nn.Linear(in_features, width, bias=False)
        if dropout > 0:
            modules["dropout"] = nn.Dropout(dropout)
        modules["square"] = Square()
        if batchnorm:
            modules["bn"] = nn.BatchNorm1d(width)
        modules[self.head_name] = nn.Linear(width, n_classes, bias=False)
        super().__init__(modules)
        self.penultimate = "bn" if batchnorm else "square"
        std = (16 * width) ** (-1 / 3)
        with torch.no_grad():
            self.embed.weight.normal_(0.0, std)
            self.head.weight.normal_(0.0, std)


def build_model(config: ModelConfig, in_shape: tuple[int, ...] | int, n_classes: int, *,
                weights: bool = True) -> nn.Module:
    """The model `config` names (or its factory builds), for inputs of shape `in_shape`.

    Parameters
    ----------
    config : stores.config.ModelConfig
        The run's model block.
    in_shape : tuple of int or int
        The shape of one input sample (images: (C, H, W)); the built-in models only.
    n_classes : int
        Outputs of the head; the built-in models only (a factory's come from its kwargs).
    weights : bool, default True
        Load `config.weights` when it names a file (False: whoever builds the model loads
        other weights next, as a store's rebuild does).

    Returns
    -------
    torch.nn.Module
        The model; the built-in ones name their `head_name` and `penultimate` point.

    Raises
    ------
    stores.ConfigError
        For a factory that does not import or does not return an nn.Module, or a weights
        file that cannot be read or does not fit the model.
    """
    model = (_built_in(config, in_shape, n_classes) if config.built_in
             else _from_factory(config.factory, config.kwargs or {}))
    if weights and config.weights is not None:
        load_weights(model, read_weights(config.weights), where="model.weights")
    return model


def _built_in(config: ModelConfig, in_shape: tuple[int, ...] | int, n_classes: int) -> nn.Module:
    in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
    in_features = int(math.prod(in_shape))
    if config.name == "modular_mlp":
        if len(config.widths) != 1:
            raise ValueError(f"model.widths: expected one width for modular_mlp, got {list(config.widths)}")
        return ModularMLP(in_features, config.widths[0], n_classes,
                          batchnorm=config.batchnorm, dropout=config.dropout)
    if config.name == "mlp":
        return MLP(in_features, tuple(config.widths), n_classes)
    if len(in_shape) != 3:
        raise ValueError(f"model.name: {config.name} expects images (C, H, W), got inputs of shape {in_shape}")
    from . import convnets  # the image models, kept apart from the small ones

    return convnets.build(config, in_shape, n_classes)


def _from_factory(factory: str, kwargs: dict) -> nn.Module:
    """`package.module:function`(**kwargs), checked to be an nn.Module."""
    module_name, _, attr = factory.partition(":")
    try:
        make = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"model.factory: cannot import {factory} ({type(err).__name__}: {err}): "
                          "expected 'package.module:function' importable here") from None
    try:
        model = make(**kwargs)
    except TypeError as err:
        raise ConfigError(f"model.kwargs: {factory} refuses {kwargs!r} ({err})") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.factory: {factory} returned a {type(model).__name__}: "
                          "expected a torch.nn.Module")
    return model


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """The state dict saved in the local file `path` (`torch.save(model.state_dict(), path)`).

    Parameters
    ----------
    path : str
        The file; read with `torch.load(weights_only=True)` (tensors and plain containers
        only, no code), onto the CPU.

    Returns
    -------
    dict of str to torch.Tensor

    Raises
    ------
    stores.ConfigError
        In one line, for a file that is missing, unreadable or holds no state dict.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as err:
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise ConfigError(f"model.weights: cannot read {path} ({reason}): expected a state dict "
                          "saved with torch.save(model.state_dict(), PATH)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model.weights: {path} holds a {type(state).__name__}, not a state dict "
                          "(names -> tensors): expected torch.save(model.state_dict(), PATH)")
    return state


@torch.no_grad()
def load_weights(model: nn.Module, state: dict, *, where: str | None = None) -> nn.Module:
    """Load a state dict of NumPy arrays or tensors (as read from a store) into `model`.

    Parameters
    ----------
    model : torch.nn.Module
        The model to load into, in place.
    state : dict of str to array-like
        Parameter and buffer name -> values; every name of the model's state dict.
    where : str or None, default None
        The config key the state comes from: a state that does not fit is then a
        ConfigError naming it, in one line (else torch's RuntimeError).

    Returns
    -------
    torch.nn.Module
        `model` itself.
    """
    tensors = {k: torch.as_tensor(v) for k, v in state.items()}
    if where is None:
        model.load_state_dict(tensors, strict=True)
        return model
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or str(err).splitlines()[:1]
        raise ConfigError(f"{where}: does not fit the model ({first[0].strip()}): expected the "
                          "state dict of this architecture") from None
    return model
