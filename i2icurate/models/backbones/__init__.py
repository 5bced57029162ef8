"""Pretrained trunks for the guiding network, found by name: registry packages first, then torchvision, then files.

`--backbone` accepts:
- `vgg11`: TUNIT's own VGG-11 trained from scratch (not a pretrained trunk; see models/tunit/guiding.py);
- a name in `PACKAGED` (weights inside a registry package, loaded offline);
- a torchvision model name (weights from the torch hub cache, downloaded there once where the internet is reachable);
- a path to a weights file, as `ARCH:PATH` or a path whose file name starts with the architecture's name
  (`resnet18-f37072fd.pth`, `efficientnet-lite0-57934424.pth`).
"""

from __future__ import annotations

from pathlib import Path

from i2icurate.errors import UserError
from i2icurate.models.backbones.base import Backbone
from i2icurate.models.backbones.efficientnet_lite import WEIGHT_PACKAGES, EfficientNetLite
from i2icurate.models.backbones.torchvision_zoo import TorchvisionBackbone, is_torchvision_model

SCRATCH = "vgg11"
PACKAGED = tuple(WEIGHT_PACKAGES)
DEFAULT_BACKBONE = "efficientnet-lite0"

__all__ = ["DEFAULT_BACKBONE", "PACKAGED", "SCRATCH", "Backbone", "is_pretrained", "load_backbone"]


def is_pretrained(spec: str) -> bool:
    """Whether `--backbone spec` names a pretrained trunk (anything but the from-scratch VGG-11)."""
    return spec != SCRATCH


def _architecture(spec: str) -> tuple[str, Path | None]:
    """(architecture name, weights file or None for the default weights) of a `--backbone` value."""
    if spec in PACKAGED or (":" not in spec and not Path(spec).suffix and is_torchvision_model(spec)):
        return spec, None
    arch, sep, rest = spec.partition(":")
    if sep and (arch in PACKAGED or is_torchvision_model(arch)):
        return arch, Path(rest).expanduser()
    path = Path(spec).expanduser()
    if not path.suffix and not path.exists():
        raise UserError(f"--backbone {spec}: not a known backbone ({', '.join((SCRATCH, *PACKAGED))}, a "
                        "torchvision model name) nor a weights file")
    stem = path.name.lower()
    known = [*PACKAGED, *_torchvision_names()]
    matches = sorted((n for n in known if stem.startswith(n.lower())), key=len, reverse=True)
    if not matches:
        raise UserError(f"--backbone {spec}: cannot tell the architecture from the file name; "
                        "give it as ARCH:PATH (for example efficientnet-lite0:{spec})")
    return matches[0], path


def _torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def load_backbone(spec: str, input_size: int) -> Backbone:
    """The frozen pretrained trunk named by `spec` (see the module docstring), reading images at `input_size`."""
    arch, weights = _architecture(spec)
    if weights is not None and not weights.is_file():
        raise UserError(f"--backbone {spec}: weights file not found: {weights}")
    if arch in PACKAGED:
        return EfficientNetLite(arch, input_size, weights)
    return TorchvisionBackbone(arch, input_size, weights)
