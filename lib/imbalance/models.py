"""The study's three networks: LeNet-5 (MNIST), All-CNN-C (CIFAR-10), ResNet-10 (ImageNet).

Every builder takes a `seed` and initialises the weights from its own `torch.Generator`, so the
same seed gives bit-identical weights and the global torch RNG is never touched: modules are
created on the `meta` device (no allocation, no random draws) and then materialised on the CPU
and filled in by `_init_`.  Each model names, in `output_layers`, the parameter-name prefixes that
the second phase of two-phase training fine-tunes.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet


class LeNet5(nn.Sequential):
    """The modern Caffe LeNet-5 (caffe/examples/mnist/lenet_train_test.prototxt)."""
    output_layers: tuple[str, ...] = ("fc2",)


class AllCNNC(nn.Sequential):
    """All-CNN-C of Springenberg et al. (2015), "Striving for simplicity", table 2."""
    output_layers: tuple[str, ...] = ("conv8", "conv9")  # the two last 1x1 convolutions


class ResNet10(ResNet):
    """torchvision's ResNet with one BasicBlock per stage (widths 64-128-256-512)."""
    output_layers: tuple[str, ...] = ("fc",)


def lenet5(*, n_classes: int = 10, in_channels: int = 1, image_size: int = 28,
           seed: int) -> LeNet5:
    """conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2, fc 500, ReLU, fc n_classes.

    As in Caffe's prototxt there is no nonlinearity after the convolutions.  Weights come from
    Caffe's "xavier" filler, U(+-sqrt(3 / fan_in)), biases are 0 (see `_xavier_`).
    """
    _check(n_classes=n_classes, in_channels=in_channels, image_size=image_size, seed=seed)
    side = ((image_size - 4) // 2 - 4) // 2  # two valid 5x5 convolutions, two 2x2 pools
    if side < 1:
        raise ValueError(f"image_size must be at least 16 for LeNet-5, got {image_size}")
    with torch.device("meta"):
        model = LeNet5(OrderedDict(
            conv1=nn.Conv2d(in_channels, 20, 5), pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(20, 50, 5), pool2=nn.MaxPool2d(2), flatten=nn.Flatten(),
            fc1=nn.Linear(50 * side * side, 500), relu=nn.ReLU(), fc2=nn.Linear(500, n_classes)))
    return _init_(model, seed)


def allcnn(*, n_classes: int = 10, in_channels: int = 3, seed: int) -> AllCNNC:
    """All-CNN-C for 32x32 inputs; ReLU after every convolution but the last; Caffe's Xavier.

    Springenberg et al. also apply dropout (20% on the input, 50% after each stride-2 layer);
    the study's description of the network does not, so there is none here.
    """
    _check(n_classes=n_classes, in_channels=in_channels, seed=seed)
    # (out channels, kernel, stride, padding) of conv1..conv9
    shapes = [(96, 3, 1, 1), (96, 3, 1, 1), (96, 3, 2, 1),
              (192, 3, 1, 1), (192, 3, 1, 1), (192, 3, 2, 1),
              (192, 3, 1, 0), (192, 1, 1, 0), (n_classes, 1, 1, 0)]
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = in_channels
    with torch.device("meta"):
        for i, (out, kernel, stride, pad) in enumerate(shapes, start=1):
            layers[f"conv{i}"] = nn.Conv2d(channels, out, kernel, stride=stride, padding=pad)
            if i < len(shapes):
                layers[f"relu{i}"] = nn.ReLU()
            channels = out
        layers["pool"] = nn.AdaptiveAvgPool2d(1)  # global average pooling -> (N, n_classes)
        layers["flatten"] = nn.Flatten()
        model = AllCNNC(layers)
    return _init_(model, seed)


def resnet10(*, n_classes: int = 1000, in_channels: int = 3, seed: int) -> ResNet10:
    """ResNet(BasicBlock, [1, 1, 1, 1]) with torchvision's initialisation, re-run from `seed`:
    Kaiming-normal (fan-out, ReLU) convolutions, batch norm weight 1 / bias 0, and nn.Linear's
    default for `fc` (Kaiming-uniform a=sqrt(5), bias U(+-1/sqrt(fan_in)))."""
    _check(n_classes=n_classes, in_channels=in_channels, seed=seed)
    with torch.device("meta"):
        model = ResNet10(BasicBlock, [1, 1, 1, 1], num_classes=n_classes)
        if in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return _init_(model, seed, conv="kaiming")


MODELS = {"lenet5": lenet5, "allcnn": allcnn, "resnet10": resnet10}


def build_model(name: str, *, n_classes: int, in_channels: int, seed: int) -> nn.Module:
    """The network registered as `name` in `MODELS`."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[name](n_classes=n_classes, in_channels=in_channels, seed=seed)


def _check(*, seed, **positive) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    for key, value in positive.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {value!r}")


def _xavier_(weight: torch.Tensor, generator: torch.Generator) -> None:
    """Caffe's "xavier" filler (variance_norm FAN_IN): U(-a, a) with a = sqrt(3 / fan_in).

    Not Glorot & Bengio's sqrt(6 / (fan_in + fan_out)) of nn.init.xavier_uniform_: with Caffe's
    the full LeNet-5 recipe reached 0.83-0.88% MNIST test error over seeds 0-3 (H200), with
    Glorot's 0.85-0.97% over seeds 0-4 -- the study requires < 1%.
    """
    bound = math.sqrt(3 / weight[0].numel())
    nn.init.uniform_(weight, -bound, bound, generator=generator)


@torch.no_grad()
def _init_(model: nn.Module, seed: int, *, conv: str = "xavier") -> nn.Module:
    """Materialise a meta-device model on the CPU and initialise it, in module order, from `seed`."""
    g = torch.Generator().manual_seed(seed)
    model.to_empty(device="cpu")
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if isinstance(module, nn.Linear) and conv == "kaiming":  # nn.Linear.reset_parameters
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=g)
                bound = 1 / math.sqrt(module.in_features)
                nn.init.uniform_(module.bias, -bound, bound, generator=g)
                continue
            if conv == "kaiming":
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu",
                                        generator=g)
            else:
                _xavier_(module.weight, g)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()  # weight 1, bias 0, running mean 0 / var 1, count 0
    return model
