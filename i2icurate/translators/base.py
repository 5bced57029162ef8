"""The contract every translator module follows, and how modules are found by name.

A translator module `i2icurate/translators/<name>.py` defines:
- `OPTIONS`: a tuple of `config.Option` that only this model takes (e.g. U-GAT-IT's `light`);
- `DEFAULTS`: overrides of the shared translate defaults (e.g. its own learning rate);
- `PRESETS`: named override sets, at least `tiny` (CPU-sized, for tests) and `full` (the paper's sizes);
- optionally `defaults_from_run(discover_config) -> dict`: defaults that depend on the discover run;
- `CPU_PLAN`, `CPU_STEP_S` (models that train): the option values of the default CPU schedule at 64 px (widths,
  batch size) and its measured seconds per iteration on one thread, from which `translate_plan.py` sizes the run;
  optionally `CPU_BF16_STEP_S`, the same in bf16 autocast, for a model measured to gain from it, and
  `CPU_BF16_PLAN`, what that plan changes (a learning rate): the plan then trains in bf16 on a CPU that computes
  bf16 natively; a model whose OPTIONS hold `CROP_OPTION` trains on crops in the CPU plan where the folder's images
  are large enough, unless an option takes a value listed in its optional `CROP_PLAN_BLOCKED_BY`;
- `TRAINS`: False for a model used as-is (TUNIT's generator), True for one trained on the two domains;
- `Translator`: a class with
    `__init__(self, cfg: dict, domain_a: np.ndarray, domain_b: np.ndarray, device: torch.device, dist=SINGLE)` where
        the domains are (N, S, S, 3) uint8 arrays (or memmaps) and `dist` (engines/distributed.py) says which share
        of each global batch this process trains on under torchrun,
    `step_count: int`, `step(i) -> dict[str, float]` (one training iteration; scalar names `loss/...`),
    `state_dict()` / `load_state_dict(state)` (networks, EMA copies, optimisers, schedulers, samplers, RNGs, step),
    `samples() -> dict[str, Tensor]` ((3, H, W) grids in [0, 1] for TensorBoard),
    `translate(x: Tensor) -> Tensor` ((B, 3, S, S) in [-1, 1] from domain A to domain B, no grad, eval mode).
Adding a model means adding a module; nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any

from i2icurate.config import Option
from i2icurate.errors import UserError

_SKIP = {"base"}

# Crop training, for models whose networks are fully convolutional (their OPTIONS include it).
MIN_CROP = 32  # the critics' instance norms need more than one position in their last layers
CROP_OPTION = Option(
    "crop_size", 0, "Train on random crops of this side (a multiple of 4) of the --img-size images and translate whole "
    "images (CUT's crop training; the networks are fully convolutional): a step then costs what one at the crop's "
    "size does. 0 = train on whole images.", int, 0, 1024)


def check_crop(cfg: dict[str, Any]) -> int:
    """The training crop's side from `crop_size` (0 = whole images), checked against `img_size`."""
    crop = int(cfg.get("crop_size", 0))
    if crop and (crop % 4 or not MIN_CROP <= crop <= cfg["img_size"]):
        raise UserError(f"--crop-size {crop} must be a multiple of 4 from {MIN_CROP} to --img-size {cfg['img_size']}")
    return 0 if crop == cfg["img_size"] else crop


def available() -> list[str]:
    """Names of the translator modules in this package."""
    import i2icurate.translators as package

    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name not in _SKIP)


def load(name: str) -> ModuleType:
    """Import the translator module `name`, with a one-line error for an unknown one."""
    if name not in available():
        raise UserError(f"unknown model {name!r}; choose from {', '.join(available())}")
    return importlib.import_module(f"i2icurate.translators.{name}")
