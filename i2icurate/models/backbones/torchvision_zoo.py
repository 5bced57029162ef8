"""Any torchvision classification model as a frozen trunk, with its ImageNet weights from the torch hub cache.

The weights are looked up in `$TORCH_HOME/hub/checkpoints/` (default `~/.cache/torch/hub/checkpoints/`) under the
file name of torchvision's download address; where the internet is reachable they are downloaded there once. Offline
(or with I2ICURATE_OFFLINE=1), a missing file is a one-line error naming the file, where to put it, and the
`--backbone PATH` alternative.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from i2icurate.errors import UserError
from i2icurate.models.backbones.base import Backbone, load_weights


def is_torchvision_model(name: str) -> bool:
    """Whether torchvision knows a classification model of this name."""
    import torchvision

    return name in torchvision.models.list_models(module=torchvision.models)


def _cached_weights(name: str) -> Path:
    """The weights file of `name` in the torch hub cache, downloading it once where the internet is reachable."""
    from torchvision.models import get_model_weights

    url = get_model_weights(name).DEFAULT.url
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if target.is_file():
        return target
    hint = (f"--backbone {name}: weights not found offline; place {target.name} in {target.parent} "
            f"(from {url}) or pass --backbone PATH")
    if os.environ.get("I2ICURATE_OFFLINE"):
        raise UserError(hint)
    try:
        torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True)
    except Exception:  # noqa: BLE001 - offline, DNS, proxy, HTTP errors: all end in the same advice
        raise UserError(hint) from None
    return target


def _stage_modules(net: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are the trunk's stages: `features` children (VGG, MobileNet, EfficientNet,
    ConvNeXt, DenseNet) or ResNet-style stem + layer1..4."""
    if isinstance(getattr(net, "features", None), nn.Sequential):
        return list(net.features.children())
    if all(hasattr(net, f"layer{i}") for i in range(1, 5)):
        return [nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool), net.layer1, net.layer2, net.layer3,
                net.layer4]
    raise UserError(f"--backbone {type(net).__name__}: this torchvision architecture has no convolutional stages "
                    "to read; choose a ResNet, VGG, MobileNet, EfficientNet, ConvNeXt or DenseNet")


class TorchvisionBackbone(Backbone):
    """A torchvision model's convolutional stages; the last stage is pooled for content."""

    def __init__(self, name: str, input_size: int, weights: str | Path | None = None) -> None:
        super().__init__(input_size)
        import torchvision

        self.name = name
        net = torchvision.models.get_model(name, weights=None)
        load_weights(net, weights if weights is not None else _cached_weights(name), f"--backbone {name}")
        self.blocks = nn.ModuleList(_stage_modules(net))
        with torch.no_grad():
            maps, final = self.stages(torch.zeros(1, 3, 64, 64))
        self.stage_channels = tuple(m.shape[1] for m in maps)
        self.content_dim = final.shape[1]
        self.freeze()

    def stages(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """The output of every stage module, in order; the last one is also the content map."""
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps, maps[-1]
