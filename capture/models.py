"""Models with named capture points.

A model names its final linear layer (`head_name`) and the capture point whose output feeds
it (`penultimate`), which capture always records because the edit needs it. Capture
points are module paths, plus `input` and `logits`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from stores.config import ModelConfig


class MLP(nn.Sequential):
    """in -> [Linear -> ReLU] * len(widths) -> Linear (the head).

    Modules are named `fc1, relu1, fc2, relu2, ..., head`, so capture points read
    `relu2` rather than `layers.3`. Each ReLU is its own module (not in place) so a
    forward hook sees exactly that layer's output.
    """

    head_name = "head"

    def __init__(self, in_features: int, widths: tuple[int, ...], n_classes: int):
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        dims = [in_features, *widths]
        for i, (n_in, n_out) in enumerate(zip(dims, dims[1:]), start=1):
            modules[f"fc{i}"] = nn.Linear(n_in, n_out)
            modules[f"relu{i}"] = nn.ReLU()
        modules[self.head_name] = nn.Linear(dims[-1], n_classes)
        super().__init__(modules)
        self.penultimate = f"relu{len(widths)}" if widths else "input"


def build_model(config: ModelConfig, in_features: int, n_classes: int) -> nn.Module:
    builders = {"mlp": lambda: MLP(in_features, tuple(config.widths), n_classes)}
    return builders[config.name]()


def capture_point_names(model: nn.Module) -> list[str]:
    """Every name a pipeline may list under `capture.points`."""
    return ["input", *(name for name, _ in model.named_modules() if name), "logits"]


def resolve_points(model: nn.Module, requested: tuple[str, ...]) -> list[str]:
    """Requested capture points in forward order, plus the penultimate one."""
    allowed = capture_point_names(model)
    for name in requested:
        if name not in allowed:
            raise ValueError(
                f"capture.points: unknown {name!r}: expected names from {', '.join(allowed)}"
            )
    wanted = set(requested) | {model.penultimate}
    return [name for name in allowed if name in wanted]


@torch.no_grad()
def load_weights(model: nn.Module, state: dict) -> nn.Module:
    """Load a state dict of NumPy arrays or tensors (as read from a store)."""
    tensors = {k: torch.as_tensor(v) for k, v in state.items()}
    model.load_state_dict(tensors, strict=True)
    return model
