"""Models a config builds by import path (`model.factory: tests.factory_models:NAME`) for
tests/test_models_anywhere.py: plain nn.Modules, without the built-in models' `head_name`
and `penultimate` attributes, so capture has to find them."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class TinyNet(nn.Module):
    """flatten -> Linear -> ReLU (together `body`) -> `out`, the head."""

    def __init__(self, in_features: int, hidden: int, n_classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class FunctionalNet(nn.Module):
    """The head's input is computed inside `forward` (a functional ReLU): no module gives it."""

    def __init__(self, in_features: int = 4, n_classes: int = 3):
        super().__init__()
        self.fc = nn.Linear(in_features, 5)
        self.head = nn.Linear(5, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc(x)))


class MeanTokens(nn.Module):
    """(batch, tokens, units) -> (batch, units)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def tiny_net(in_features: int = 64, hidden: int = 16, n_classes: int = 10) -> nn.Module:
    """A TinyNet (the factory a pipeline names)."""
    return TinyNet(in_features, hidden, n_classes)


def token_net(dim: int = 6, n_classes: int = 3) -> nn.Module:
    """Inputs (batch, tokens, dim): `mix` (a per-token Linear, output (batch, tokens, dim)),
    `pool` (the mean over tokens), `head`."""
    return nn.Sequential(OrderedDict(mix=nn.Linear(dim, dim), act=nn.Tanh(), pool=MeanTokens(),
                                     head=nn.Linear(dim, n_classes)))


def not_a_model(**kwargs) -> str:
    """A factory that returns something other than an nn.Module."""
    return "not a model"
