"""The study's three networks: LeNet-5 (MNIST), All-CNN-C (CIFAR-10), ResNet-10 (ImageNet).

Every builder takes a `seed` and initialises the weights from its own `torch.Generator`, so the
same seed gives bit-identical weights and the global torch RNG is never touched: modules are
created on the `meta` device (no allocation, no random draws) and then materialised on the CPU
and filled in by `_init_`.  Each model names, in `output_layers`, the parameter-name prefixes that
the second phase of two-phase training fine-tunes.

Dropout (All-CNN-C) is `SeededDropout`: its masks come from the layer's own generator, seeded
from the network's seed, so a network's masks never depend on the global RNG nor on which other
networks train in parallel threads.
"""
from __future__ import annotations

import copy
import functools
import math
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

DROPOUT_STREAM = 0xD80F  # SeedSequence key that separates dropout streams from the weights'


def dropout_seed(seed: int, layer: int) -> int:
    """The seed of a network's `layer`-th dropout layer: a stream distinct from the weights'."""
    state = np.random.SeedSequence([seed, DROPOUT_STREAM, layer]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1       # 63 bits: a valid seed on CPU and CUDA


class SeededDropout(nn.Module):
    """Inverted dropout with masks drawn from the layer's own generator (one per device).

    In training an element is kept with probability 1 - p and scaled by 1 / (1 - p) (Caffe's
    Dropout layer and nn.Dropout); in eval mode it is the identity and draws nothing.  A mask is
    `torch.rand(x.shape) >= p`, drawn in logical (not memory) order, so channels-last inputs get
    the masks contiguous ones would.  The generator state is not in the state_dict: `reseed`
    restarts the stream.  A tensor assigned to `mask` (e.g. per-network masks passed by
    torch.func.functional_call under vmap, see `dropout_masks`) is used instead of a draw.
    """

    def __init__(self, p: float, *, seed: int):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"dropout p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        self.register_buffer("mask", None, persistent=False)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"dropout seed must be a non-negative int, got {seed!r}")
        self.seed, self._generators = seed, {}

    def draw_mask(self, shape, *, device, dtype=torch.float32) -> torch.Tensor:
        """The next mask of this layer's stream on `device`: 0 or 1 / (1 - p), shaped `shape`."""
        device = torch.device(device)
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        keep = torch.rand(tuple(shape), generator=self._generators[key], device=device) >= self.p
        return keep.to(dtype) * (1 / (1 - self.p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.mask is not None:
            return x * self.mask
        if x.is_meta:  # a shape probe (see dropout_shapes) draws nothing
            return x
        return x * self.draw_mask(x.shape, device=x.device, dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}, seed={self.seed}"


def dropout_layers(model: nn.Module) -> dict[str, SeededDropout]:
    """The model's dropout layers by module name, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, SeededDropout)}


def reseed_dropout(model: nn.Module, seed: int) -> nn.Module:
    """Restart every dropout layer's stream from `seed` (as a build with `seed` would)."""
    for layer, m in enumerate(dropout_layers(model).values()):
        m.reseed(dropout_seed(seed, layer))
    return model


def dropout_shapes(model: nn.Module, input_shape) -> dict[str, torch.Size]:
    """The input shape of each dropout layer (by name) for one network's input of `input_shape`
    (e.g. (batch, C, H, W)), from a forward pass on the meta device: nothing computed or drawn."""
    probe = copy.deepcopy(model).to("meta").train()
    shapes: dict[str, torch.Size] = {}

    def record(name):
        def hook(module, args):
            shapes[name] = args[0].shape
        return hook
    hooks = [m.register_forward_pre_hook(record(name)) for name, m in dropout_layers(probe).items()]
    with torch.no_grad():
        probe(torch.empty(tuple(input_shape), device="meta", dtype=next(probe.parameters()).dtype))
    for h in hooks:
        h.remove()
    return shapes


def dropout_masks(models, shapes: dict, *, device, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """One training step's masks of K networks of one architecture, stacked: {"<layer>.mask":
    (K, *shape)}, each network's drawn from its own layers' streams exactly as its own forward
    would draw them.  shapes: from `dropout_shapes` (computed once).  For vmapped training: pass
    them with the parameters to torch.func.functional_call; {} for a model without dropout."""
    layers = [dropout_layers(m) for m in models]
    return {f"{name}.mask": torch.stack([own[name].draw_mask(shape, device=device, dtype=dtype)
                                         for own in layers])
            for name, shape in shapes.items() if layers[0][name].p > 0}


class LeNet5(nn.Sequential):
    """The modern Caffe LeNet-5 (caffe/examples/mnist/lenet_train_test.prototxt)."""
    output_layers: tuple[str, ...] = ("fc2",)


class AllCNNC(nn.Sequential):
    """All-CNN-C of Springenberg et al. (2015), "Striving for simplicity", table 2, with the
    dropout of the study authors' Caffe model (see `allcnn`)."""
    output_layers: tuple[str, ...] = ("conv8", "conv9")  # the two last 1x1 convolutions


class ResNet10(ResNet):
    """torchvision's ResNet with one BasicBlock per stage (widths 64-128-256-512)."""
    output_layers: tuple[str, ...] = ("fc",)


def lenet5(*, n_classes: int = 10, in_channels: int = 1, image_size: int | tuple[int, int] = 28,
           seed: int) -> LeNet5:
    """conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2, fc 500, ReLU, fc n_classes.

    image_size: the input's side (or (height, width)); fc1 takes what the convolutions leave of it.

    As in Caffe's prototxt there is no nonlinearity after the convolutions.  Weights come from
    Caffe's "xavier" filler, U(+-sqrt(3 / fan_in)), biases are 0 (see `_xavier_`).
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    _check(n_classes=n_classes, in_channels=in_channels, image_height=height, image_width=width, seed=seed)
    side_h, side_w = (((x - 4) // 2 - 4) // 2 for x in (height, width))  # two valid 5x5 convolutions, two 2x2 pools
    if min(side_h, side_w) < 1:
        raise ValueError(f"image_size must be at least 16 for LeNet-5, got {image_size}")
    with torch.device("meta"):
        model = LeNet5(OrderedDict(
            conv1=nn.Conv2d(in_channels, 20, 5), pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(20, 50, 5), pool2=nn.MaxPool2d(2), flatten=nn.Flatten(),
            fc1=nn.Linear(50 * side_h * side_w, 500), relu=nn.ReLU(), fc2=nn.Linear(500, n_classes)))
    return _init_(model, seed)


def allcnn(*, n_classes: int = 10, in_channels: int = 3, seed: int, input_dropout: float = 0.2,
           hidden_dropout: float = 0.5) -> AllCNNC:
    """All-CNN-C as the study's authors trained it (mateuszbuda/ALL-CNN, ALL_CNN_C_train_val.prototxt).

    Dropout `input_dropout` on the input and `hidden_dropout` after the two stride-2 convolutions
    (conv3, conv6; as in Springenberg et al. 2015); ReLU after every convolution, conv9
    included, then global average pooling; Caffe's "xavier" weights, zero biases.  The dropout
    layers (SeededDropout) draw from streams derived from `seed` (see `dropout_seed`).
    """
    _check(n_classes=n_classes, in_channels=in_channels, seed=seed)
    # (out channels, kernel, stride, padding) of conv1..conv9
    shapes = [(96, 3, 1, 1), (96, 3, 1, 1), (96, 3, 2, 1),
              (192, 3, 1, 1), (192, 3, 1, 1), (192, 3, 2, 1),
              (192, 3, 1, 0), (192, 1, 1, 0), (n_classes, 1, 1, 0)]
    dropout_after = {3: "drop2", 6: "drop3"}  # the prototxt's layer names
    layers: OrderedDict[str, nn.Module] = OrderedDict(drop1=SeededDropout(input_dropout, seed=0))
    channels = in_channels
    with torch.device("meta"):
        for i, (out, kernel, stride, pad) in enumerate(shapes, start=1):
            layers[f"conv{i}"] = nn.Conv2d(channels, out, kernel, stride=stride, padding=pad)
            layers[f"relu{i}"] = nn.ReLU()
            if i in dropout_after:
                layers[dropout_after[i]] = SeededDropout(hidden_dropout, seed=0)
            channels = out
        layers["pool"] = nn.AdaptiveAvgPool2d(1)  # global average pooling -> (N, n_classes)
        layers["flatten"] = nn.Flatten()
        model = AllCNNC(layers)
    return reseed_dropout(_init_(model, seed), seed)


def resnet10(*, n_classes: int = 1000, in_channels: int = 3, seed: int) -> ResNet10:
    """ResNet(BasicBlock, [1, 1, 1, 1]) initialised from `seed`: torchvision's Kaiming-normal
    (fan-out, ReLU) convolutions and batch norm weight 1 / bias 0; the final `fc` explicitly as
    the paper says ("Kaiming (also known as MSRA)"): Caffe's "msra" filler with its default
    variance_norm FAN_IN, N(0, 2 / fan_in) with fan_in = 512 inputs, and a zero bias (Caffe's
    default bias filler), not nn.Linear's Kaiming-uniform a=sqrt(5) with a U(+-1/sqrt(512)) bias.
    FAN_IN is He et al. (2015)'s forward-pass condition (eq. 10) on the layer's 512 pooled ReLU
    features; fan-out would tie the fc's scale to n_classes, which varies with the dataset."""
    _check(n_classes=n_classes, in_channels=in_channels, seed=seed)
    with torch.device("meta"):
        model = ResNet10(BasicBlock, [1, 1, 1, 1], num_classes=n_classes)
        if in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return _init_(model, seed, conv="kaiming")


MODELS = {"lenet5": lenet5, "allcnn": allcnn, "resnet10": resnet10}


# models whose input layer fixes the image size (the others end in global pooling, so any size works)
SIZED = {"lenet5": (28, 28)}     # name -> the (height, width) its registered entry takes


def build_model(name: str, *, n_classes: int, in_channels: int, seed: int,
                image_size: tuple[int, int] | None = None) -> nn.Module:
    """The network registered as `name` in `MODELS`; image_size (height, width) adapts a sized model's
    input layer (LeNet-5's fc1), and is ignored by those that pool globally (All-CNN-C, ResNet-10)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    if image_size is not None and name in SIZED:
        return MODELS[name](n_classes=n_classes, in_channels=in_channels, seed=seed, image_size=tuple(image_size))
    return MODELS[name](n_classes=n_classes, in_channels=in_channels, seed=seed)


def sized_model(name: str, image_size: tuple[int, int]) -> str:
    """The MODELS key of `name` for inputs of image_size (height, width): `name` itself where it fits already
    (or pools globally), else a variant `<name>@<h>x<w>` registered in MODELS once (a recipe names it as
    `model`, so every trainer builds it without being told the size)."""
    height, width = (int(x) for x in image_size)
    if name not in SIZED or SIZED[name] == (height, width):
        return name
    key = f"{name}@{height}x{width}"
    if key not in MODELS:
        MODELS[key] = functools.partial(MODELS[name], image_size=(height, width))
        SIZED[key] = (height, width)
    return key


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
            if isinstance(module, nn.Linear) and conv == "kaiming":  # Caffe's "msra", FAN_IN
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu",
                                        generator=g)
            elif conv == "kaiming":
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu",
                                        generator=g)
            else:
                _xavier_(module.weight, g)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()  # weight 1, bias 0, running mean 0 / var 1, count 0
    return model


# --- output heads of today's methods (per network, after the model is built) ---------------------------------

class CosineHead(nn.Module):
    """Cao et al.'s NormedLinear (kaidic/LDAM-DRW, models/resnet_cifar.py) with its scale folded in:
    s * normalize(x) . normalize(w_c) for each class c, on a linear layer's features, or per position on a
    1x1 convolution's channels (All-CNN-C's last layer: a declared extension).  No bias.  Its weight starts as
    the replaced layer's (the same draw as the paired methods'); only its direction matters."""

    def __init__(self, layer: nn.Module, *, scale: float):
        super().__init__()
        if not isinstance(layer, (nn.Linear, nn.Conv2d)) or (isinstance(layer, nn.Conv2d)
                                                               and layer.kernel_size != (1, 1)):
            raise ValueError(f"a cosine head replaces a linear or 1x1 convolution output layer, got {layer}")
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.nn.functional.normalize(self.weight.flatten(1), dim=1)
        if self.weight.dim() == 2:
            return self.scale * torch.nn.functional.normalize(x, dim=1) @ w.t()
        return self.scale * torch.nn.functional.conv2d(torch.nn.functional.normalize(x, dim=1),
                                                       w.view_as(self.weight))


def _last_output_layer(model: nn.Module) -> tuple[nn.Module, str]:
    """(the module holding it, the attribute name) of the model's last output layer."""
    path = model.output_layers[-1].split(".")
    parent = model
    for part in path[:-1]:
        parent = getattr(parent, part)
    return parent, path[-1]


def with_cosine_head(model: nn.Module, *, scale: float) -> nn.Module:
    """`model` with its last output layer replaced by a `CosineHead` of that layer's weights."""
    parent, name = _last_output_layer(model)
    setattr(parent, name, CosineHead(getattr(parent, name), scale=scale))
    return model


def set_output_bias(model: nn.Module, value: float) -> nn.Module:
    """Every bias of the model's last output layer set to `value` (Cui et al.: -log(C - 1), so each sigmoid
    output starts at 1/C)."""
    parent, name = _last_output_layer(model)
    layer = getattr(parent, name)
    if getattr(layer, "bias", None) is None:
        raise ValueError(f"the output layer {name!r} has no bias to initialise")
    with torch.no_grad():
        layer.bias.fill_(value)
    return model
