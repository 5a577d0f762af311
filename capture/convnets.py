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
    """The papers' CNN (`CNN_code/cnn_create.py`): six 3x3 convolutions (padding 1) of
    16, 16, 32, 32, 64, 64 channels, each followed by a ReLU, a 2x2 max-pool after each
    pair, then three fully connected layers of 250 with ReLU and an output layer without
    bias. The authors' fourth pool (an average pool of kernel 1) is an identity and is
    left out. Flattened conv output: 64*3*3 = 576 for 28-pixel inputs, 64*4*4 = 1024
    for 32-pixel ones.

    conv1-relu1-conv2-relu2-pool1, conv3..pool2, conv5..pool3, flatten,
    fc1-relu7, fc2-relu8, fc3-relu9 (250 each), head (no bias).
    """

    head_name = "head"
    penultimate = "relu9"

    def __init__(self, in_shape: tuple[int, int, int], n_classes: int, width: int = 250):
        c, h, w = in_shape
        layers: list[tuple[str, nn.Module]] = []
        channels = [c, 16, 16, 32, 32, 64, 64]
        for i in range(6):
            layers += [(f"conv{i + 1}", nn.Conv2d(channels[i], channels[i + 1], 3, padding=1)),
                       (f"relu{i + 1}", nn.ReLU())]
            if i % 2 == 1:
                layers.append((f"pool{i // 2 + 1}", nn.MaxPool2d(2)))
        flat = 64 * (h // 8) * (w // 8)  # three 2x2 pools, each flooring
        layers.append(("flatten", nn.Flatten()))
        dims = [flat, width, width, width]
        for i in range(3):
            layers += [(f"fc{i + 1}", nn.Linear(dims[i], dims[i + 1])), (f"relu{i + 7}", nn.ReLU())]
        layers.append((self.head_name, nn.Linear(width, n_classes, bias=False)))
        super().__init__(_named(layers))


class AlexNet(nn.Sequential):
    """The papers' AlexNet variants (`MASC/cnn_create.py`), conv stack then FC 4096, 4096.

    32-pixel variant (CIFAR-100, `small_stem`): conv 3->64 (3x3, stride 2, pad 1); the
    64-pixel one (Tiny ImageNet): conv 3->64 (11x11, stride 4, pad 2). Then, in both:
    ReLU, max-pool 3/2; conv 64->192 (3x3 pad 1 in the 32-pixel variant, 5x5 pad 2 in
    the 64-pixel one), ReLU, max-pool 3/2; convs 192->384, 384->256, 256->256 (3x3,
    pad 1, ReLU each); max-pool 3/2 -> 256x1x1 at those sizes; flatten, fc1 -> 4096,
    ReLU, fc2 4096 -> 4096, ReLU, head 4096 -> K (with bias; no dropout, as in the
    papers' main runs).
    """

    head_name = "head"
    penultimate = "relu7"

    def __init__(self, in_shape: tuple[int, int, int], n_classes: int, small_stem: bool = True,
                 width: int = 4096):
        c, h, w = in_shape
        first = nn.Conv2d(c, 64, 3, 2, 1) if small_stem else nn.Conv2d(c, 64, 11, 4, 2)
        second = nn.Conv2d(64, 192, 3, padding=1) if small_stem else nn.Conv2d(64, 192, 5, padding=2)
        layers = [("conv1", first), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(3, 2)),
                  ("conv2", second), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(3, 2)),
                  ("conv3", nn.Conv2d(192, 384, 3, padding=1)), ("relu3", nn.ReLU()),
                  ("conv4", nn.Conv2d(384, 256, 3, padding=1)), ("relu4", nn.ReLU()),
                  ("conv5", nn.Conv2d(256, 256, 3, padding=1)), ("relu5", nn.ReLU()),
                  ("pool3", nn.MaxPool2d(3, 2)), ("flatten", nn.Flatten())]
        flat = _flat_size(nn.Sequential(_named(layers)), in_shape)  # 256 at 32 and 64 px
        layers += [("fc1", nn.Linear(flat, width)), ("relu6", nn.ReLU()),
                   ("fc2", nn.Linear(width, width)), ("relu7", nn.ReLU()),
                   (self.head_name, nn.Linear(width, n_classes))]
        super().__init__(_named(layers))


def _flat_size(stack: nn.Module, in_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(stack(torch.zeros(1, *in_shape)).shape[1])


class BasicBlock(nn.Module):
    """ResNet's basic block: conv3x3-BN-relu1-conv3x3-BN, plus the shortcut, then relu2.

    Each ReLU is its own module (torchvision's block calls one ReLU twice), so a hook on
    `layer1.0.relu1` sees the block's first ReLU only; `layer1.0` is the block's output.
    Parameter names follow torchvision's (`downsample.0` is the 1x1 conv, `.1` its BN).
    """

    def __init__(self, n_in: int, n_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(n_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(n_out, n_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.downsample = (nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride, bias=False), nn.BatchNorm2d(n_out))
                           if stride != 1 or n_in != n_out else None)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """ResNet-18 as the papers' `ResNet18` (`MASC/cnn_create.py`): stem conv 3->64 (3x3,
    stride 1, pad 1, no bias; with `cifar_stem` false torchvision's 7x7 stride 2), BN,
    ReLU, max-pool (3x3, stride 2, pad 1: kept, as the authors do), four stages of two
    basic blocks (64, 128, 256, 512), adaptive average pool, fc 512 -> K with bias.
    PyTorch's default initialisation, as the authors' own module has.
    """

    head_name = "fc"
    penultimate = "avgpool"  # (B, 512, 1, 1), flattened it is fc's input

    def __init__(self, in_shape: tuple[int, int, int], n_classes: int, cifar_stem: bool = True):
        super().__init__()
        stride, kernel = (1, 3) if cifar_stem else (2, 7)
        self.conv1 = nn.Conv2d(in_shape[0], 64, kernel, stride, kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, n_in = (64, 128, 256, 512), 64
        for i, n_out in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(n_in, n_out, stride), BasicBlock(n_out, n_out)))
            n_in = n_out
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build(config: ModelConfig, in_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """The image model `config.name` names; `capture.models.build_model` calls it for images.

    Parameters
    ----------
    config : stores.config.ModelConfig
        name and cifar_stem.
    in_shape : tuple of int
        One image's (C, H, W).
    n_classes : int
        Outputs of the head.

    Returns
    -------
    torch.nn.Module
    """
    if config.name == "cnn":
        return CNN(in_shape, n_classes)
    if config.name == "alexnet":
        return AlexNet(in_shape, n_classes, small_stem=config.cifar_stem)
    return ResNet18(in_shape, n_classes, config.cifar_stem)
