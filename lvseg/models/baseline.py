"""Segmentation networks trained end to end (the EchoNet baseline and its variants).

Every builder returns an ``nn.Module`` mapping float (B, 3, H, W) to logits (B, C, H, W), randomly
initialised: torchvision's default would download ImageNet weights, which these machines cannot
and a reproducible run should not. Backbone weights come only from a local file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lvseg.registry import lookup

TORCHVISION = ("deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large",
               "fcn_resnet50", "lraspp_mobilenet_v3_large")


class OutTensor(nn.Module):
    """torchvision segmentation models return {"out": logits}; we want the tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


class TinySegNet(nn.Module):
    """A ~30k-parameter encoder-decoder for tests and the demo (never a result)."""

    def __init__(self, out_channels: int = 1, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.down1, self.down2 = block(3, width), block(width, 2 * width)
        self.bottom = block(2 * width, 2 * width)
        self.up2, self.up1 = block(4 * width, width), block(2 * width, width)
        self.head = nn.Conv2d(width, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W), H and W divisible by 4
        d1 = self.down1(x)
        d2 = self.down2(nn.functional.max_pool2d(d1, 2))
        b = self.bottom(nn.functional.max_pool2d(d2, 2))
        u2 = self.up2(torch.cat([nn.functional.interpolate(b, scale_factor=2.0), d2], 1))
        u1 = self.up1(torch.cat([nn.functional.interpolate(u2, scale_factor=2.0), d1], 1))
        return self.head(u1)


def _torchvision(name: str) -> Callable[[int], nn.Module]:
    def build(out_channels: int) -> nn.Module:
        from torchvision.models import segmentation  # ~3 s to import: only where a torchvision net is built

        # num_classes builds the final 1x1 conv(s) with our channel count directly: the reference
        # swaps in a 1-channel conv after building; the architecture is the same
        kwargs = {} if name.startswith("lraspp") else {"aux_loss": False}
        model = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=out_channels, **kwargs)
        return OutTensor(model)

    return build


MODELS: dict[str, Callable[[int], nn.Module]] = {name: _torchvision(name) for name in TORCHVISION}
MODELS["tiny"] = TinySegNet


def build_model(name: str, *, out_channels: int, backbone_weights: str | Path | None) -> nn.Module:
    """A registered network, randomly initialised; ``backbone_weights`` is a local state-dict file
    for its backbone (e.g. torchvision's ImageNet ResNet-50 weights, saved beforehand)."""
    model = lookup(MODELS, name, "model")(out_channels)
    if backbone_weights is not None:
        load_backbone_weights(model, Path(backbone_weights))
    return model


def load_backbone_weights(model: nn.Module, path: Path) -> None:
    """Load a classification network's state dict into the segmentation model's backbone.

    The classifier's own keys (``fc.*``, ``classifier.*``) are dropped; every backbone key must
    match, so a wrong file fails loudly instead of silently leaving random weights.
    """
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights {path} not found (save a state dict there first)")
    backbone = getattr(getattr(model, "model", model), "backbone", None)
    if backbone is None:
        raise ValueError(f"{type(model).__name__} has no backbone to load {path} into")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    # MobileNet backbones are the classifier's `features` re-indexed: features.3.x -> 3.x
    state = {k.removeprefix("features."): v for k, v in state.items()}
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches raise even when strict=False
        raise ValueError(f"{path}: does not fit the backbone: {str(error).splitlines()[1:3]}") from error
    if missing or unexpected:
        raise ValueError(f"{path}: does not fit the backbone: {len(missing)} missing key(s) "
                         f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
