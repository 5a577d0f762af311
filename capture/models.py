"""Models with named capture points.

A model names its final linear layer (`head_name`) and the capture point whose output feeds
it (`penultimate`), which capture always records because the edit needs it. Capture
points are module paths, plus `input` and `logits` (`capture.points`).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from stores.config import ModelConfig


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


def build_model(config: ModelConfig, in_shape: tuple[int, ...] | int, n_classes: int) -> nn.Module:
    """The model `config` names, for inputs of shape `in_shape`.

    Parameters
    ----------
    config : stores.config.ModelConfig
        The run's model block.
    in_shape : tuple of int or int
        The shape of one input sample (images: (C, H, W)).
    n_classes : int
        Outputs of the head.

    Returns
    -------
    torch.nn.Module
        The model, with its `head_name` and `penultimate` capture point named.
    """
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


@torch.no_grad()
def load_weights(model: nn.Module, state: dict) -> nn.Module:
    """Load a state dict of NumPy arrays or tensors (as read from a store) into `model`.

    Parameters
    ----------
    model : torch.nn.Module
        The model to load into, in place.
    state : dict of str to array-like
        Parameter and buffer name -> values; every name of the model's state dict.

    Returns
    -------
    torch.nn.Module
        `model` itself.
    """
    tensors = {k: torch.as_tensor(v) for k, v in state.items()}
    model.load_state_dict(tensors, strict=True)
    return model
