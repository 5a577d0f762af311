"""The latent-generalization papers' image models, with named capture points.

Every model names its final linear layer (`head_name`) and the capture point whose
(flattened) output is that layer's input (`penultimate`).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from stores.config import ModelConfig


def _named(pairs: list[tuple[str, nn.Module]]) -> OrderedDict[str, nn.Module]:
    return OrderedDict(pairs)


class CNN(nn.Sequential):
    """The papers' CNN: two conv blocks, then three fully connected layers of 250 and an
    output layer without bias.

    conv1-relu1-conv2-relu2-pool1 (32 channels), conv3-relu3-conv4-relu4-pool2 (64),
    flatten, fc1-relu5, fc2-relu6, fc3-relu7 (250 each), head (no bias).
    """

    head_name = "head"
    penultimate = "relu7"

    def __init__(self, in_shape: tuple[int, int, int], n_classes: int, width: int = 250):
        c, h, w = in_shape
        layers: list[tuple[str, nn.Module]] = []
        channels = [c, 32, 32, 64, 64]
        for i in range(4):
            layers += [(f"conv{i + 1}", nn.Conv2d(channels[i], channels[i + 1], 3, padding=1)),
                       (f"relu{i + 1}", nn.ReLU())]
            if i % 2 == 1:
                layers.append((f"pool{i // 2 + 1}", nn.MaxPool2d(2)))
        flat = 64 * (h // 4) * (w // 4)
        layers.append(("flatten", nn.Flatten()))
        dims = [flat, width, width, width]
        for i in range(3):
            layers += [(f"fc{i + 1}", nn.Linear(dims[i], dims[i + 1])), (f"relu{i + 5}", nn.ReLU())]
        layers.append((self.head_name, nn.Linear(width, n_classes, bias=False)))
        super().__init__(_named(layers))


class AlexNetSmall(nn.Sequential):
    """AlexNet-style network for 32- and 64-pixel inputs (the small AlexNet used for
    CIFAR in the memorization literature): two conv(5x5, 64)-ReLU-maxpool(3, 2)-LRN
    blocks, then fully connected 384 and 192, then the head."""

    head_name = "head"
    penultimate = "relu4"

    def __init__(self, in_shape: tuple[int, int, int], n_classes: int):
        c, h, w = in_shape
        layers = [("conv1", nn.Conv2d(c, 64, 5, padding=2)), ("relu1", nn.ReLU()),
                  ("pool1", nn.MaxPool2d(3, 2, padding=1)), ("norm1", nn.LocalResponseNorm(4)),
                  ("conv2", nn.Conv2d(64, 64, 5, padding=2)), ("relu2", nn.ReLU()),
                  ("pool2", nn.MaxPool2d(3, 2, padding=1)), ("norm2", nn.LocalResponseNorm(4)),
                  ("flatten", nn.Flatten())]
        flat = 64 * (-(-h // 4)) * (-(-w // 4))
        layers += [("fc1", nn.Linear(flat, 384)), ("relu3", nn.ReLU()),
                   ("fc2", nn.Linear(384, 192)), ("relu4", nn.ReLU()),
                   (self.head_name, nn.Linear(192, n_classes))]
        super().__init__(_named(layers))


def resnet18(in_shape: tuple[int, int, int], n_classes: int, cifar_stem: bool) -> nn.Module:
    """torchvision's ResNet-18; the CIFAR stem replaces the 7x7/2 conv and the max pool
    by a 3x3/1 conv, which small images need to keep their spatial size."""
    import torchvision  # here, not at module level: importing it costs ~1 s of every CLI start

    model = torchvision.models.resnet18(num_classes=n_classes)
    if in_shape[0] != 3 or cifar_stem:
        stride, kernel = (1, 3) if cifar_stem else (2, 7)
        model.conv1 = nn.Conv2d(in_shape[0], 64, kernel, stride, kernel // 2, bias=False)
    if cifar_stem:
        model.maxpool = nn.Identity()
    model.head_name = "fc"
    model.penultimate = "avgpool"  # (B, 512, 1, 1), flattened it is fc's input
    return model


def build(config: ModelConfig, in_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    if config.name == "cnn":
        return CNN(in_shape, n_classes)
    if config.name == "alexnet":
        return AlexNetSmall(in_shape, n_classes)
    return resnet18(in_shape, n_classes, config.cifar_stem)


@torch.inference_mode()
def output_shapes(model: nn.Module, in_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of every module, from one forward pass in eval mode."""
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
