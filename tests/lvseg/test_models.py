from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from lvseg.models.baseline import MODELS, build_model
from lvseg.models.halflinear import half_rows_linear
from lvseg.models.heads import HALF_INPUT_HEADS, HEADS, PatchLinear, build_probe, upsample_bilinear


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_baseline_model_maps_frames_to_one_logit_map(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, out_channels=1, backbone_weights=None).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 112, 112)).shape == (1, 1, 112, 112)


def test_two_channels_for_softmax_losses() -> None:
    model = build_model("tiny", out_channels=2, backbone_weights=None)
    assert model(torch.randn(2, 3, 112, 112)).shape == (2, 2, 112, 112)


@pytest.mark.parametrize("model, classifier", [
    ("deeplabv3_resnet50", torchvision.models.resnet50),
    ("lraspp_mobilenet_v3_large", torchvision.models.mobilenet_v3_large),
])
def test_backbone_weights_load_from_a_local_file(tmp_path: Path, model: str, classifier) -> None:
    torch.manual_seed(1)
    weights = classifier(weights=None).state_dict()
    torch.save(weights, tmp_path / "backbone.pt")
    built = build_model(model, out_channels=1, backbone_weights=tmp_path / "backbone.pt")
    backbone = built.model.backbone.state_dict()
    first = next(k for k in weights if not k.startswith(("fc.", "classifier.")))
    assert torch.equal(backbone[first.removeprefix("features.")], weights[first])


def test_wrong_backbone_file_fails_loudly(tmp_path: Path) -> None:
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pt")
    with pytest.raises(ValueError, match="does not fit the backbone"):
        build_model("deeplabv3_resnet50", out_channels=1, backbone_weights=tmp_path / "r18.pt")
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        build_model("deeplabv3_resnet50", out_channels=1, backbone_weights=tmp_path / "nothere.pt")
    with pytest.raises(ValueError, match="unknown model 'unet'"):
        build_model("unet", out_channels=1, backbone_weights=None)


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("out", [1, 2])
def test_every_head_upsamples_patch_logits_to_the_mask(head: str, out: int) -> None:
    probe = build_probe(head, channels=24, out=out, mask_size=(112, 112))
    assert probe(torch.randn(3, 24, 16, 16)).shape == (3, out, 112, 112)


@pytest.mark.parametrize(("grid", "size"), [((16, 16), (112, 112)), ((32, 32), (112, 112)), ((7, 9), (40, 25))])
def test_upsampling_by_matrix_products_is_torchs_bilinear_interpolation(grid: tuple[int, int],
                                                                         size: tuple[int, int]) -> None:
    """Against torch's kernel in float64: in float32 the matrix products come within 1e-6 of it, where
    torch's own float32 kernel strays by up to ~2e-5 (its weights are computed in float32)."""
    logits = torch.randn(3, 2, *grid, generator=torch.Generator().manual_seed(0))

    def exact(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x.double(), size=size, mode="bilinear", align_corners=False).float()

    assert torch.allclose(upsample_bilinear(logits, size), exact(logits), rtol=0, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as on a GPU: the weights stay float32
        upsampled = upsample_bilinear(logits.bfloat16(), size)
    assert upsampled.dtype == torch.float32
    assert torch.allclose(upsampled, exact(logits.bfloat16()), rtol=0, atol=1e-6)


def test_the_linear_head_is_a_1x1_convolution_and_loads_its_checkpoints() -> None:
    convolution = torch.nn.Conv2d(24, 2, 1)
    head = PatchLinear(24, 2)
    head.load_state_dict(convolution.state_dict())
    features = torch.randn(5, 24, 16, 16)
    for layout in (torch.contiguous_format, torch.channels_last):
        assert torch.allclose(head(features.contiguous(memory_format=layout)), convolution(features), atol=1e-5)


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_the_linear_head_takes_fp16_features_as_their_float32_copy(layout: torch.memory_format,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache's rows as they are, on a CPU outside autocast, through lvseg.models.halflinear
    (no float32 copy of the batch): the logits and the parameters' gradients are those over a
    float32 copy of the features."""
    from lvseg.models import heads

    calls = []
    monkeypatch.setattr(heads, "half_rows_linear", lambda *args: calls.append(args[0].dtype) or half_rows_linear(*args))
    torch.manual_seed(0)
    features = torch.randn(3, 24, 5, 5).half().contiguous(memory_format=layout)
    heads = [PatchLinear(24, 2) for _ in range(2)]
    heads[1].load_state_dict(heads[0].state_dict())
    upstream = torch.randn(3, 2, 5, 5)
    logits = [head(x) for head, x in zip(heads, (features, features.float()), strict=True)]
    assert logits[0].dtype == torch.float32 and torch.equal(logits[0], logits[1])
    assert calls == [torch.float16]  # the fp16 features went through it, the float32 copy did not
    for out in logits:
        (out * upstream).sum().backward()
    for ours, copy in zip(heads[0].parameters(), heads[1].parameters(), strict=True):
        assert torch.allclose(ours.grad, copy.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("head", sorted(HALF_INPUT_HEADS))
def test_every_head_said_to_take_fp16_rows_takes_them_as_their_float32_copy(head: str) -> None:
    """The probe recipe gives these heads the cache's fp16 rows on a CPU (lvseg.recipes.probe)."""
    torch.manual_seed(0)
    probe = build_probe(head, channels=24, out=1, mask_size=(14, 14)).eval()
    features = torch.randn(2, 24, 4, 4).half().contiguous(memory_format=torch.channels_last)
    assert torch.equal(probe(features), probe(features.float()))
