"""TUNIT as an instant translator: the discover run's EMA generator with the target domain's mean style code.

Nothing is trained. The target style is the mean guiding-network style code of the target domain's images (the
cluster prototype of the TUNIT paper, recomputed so that human relabelling is taken into account).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from i2icurate.config import Option
from i2icurate.data.augment import resize_square
from i2icurate.engines.distributed import SINGLE, Dist
from i2icurate.export.inference import embed
from i2icurate.export.pipeline import load_trained
from i2icurate.plan import warmup_iterations
from i2icurate.runs import read_json

OPTIONS: tuple[Option, ...] = ()
DEFAULTS: dict[str, Any] = {}
PRESETS: dict[str, dict[str, Any]] = {"full": {}, "tiny": {}}
TRAINS = False
# Generator iterations below which the translations are a preview. Measured on OpenMoji colour -> line-art at 32 px
# (bench/RESULTS.md, issue 11): about 170 iterations KID x100 22.3; 2,208 (unsupervised) 5.82; 2,208 + 2,400 with
# the true domains 3.26; 2,570 with the true domains at G and D rate 3e-4 2.92 and 3.24, at 6e-4 (the CPU plan) 2.71
# and 2.41, against 3.09 for the untranslated input. The CPU plan of discover trains at most 2,000.
PREVIEW_ITERS = 2000


def generator_iterations(run: Path) -> int:
    """Generator iterations of a discover run, counting the runs it was retrained from (--from)."""
    total, seen = 0, set()
    while run.is_dir() and run.resolve() not in seen:
        seen.add(run.resolve())
        cfg = read_json(run / "config.json")
        total += cfg["iters"] - warmup_iterations(cfg)
        if not cfg.get("from_run"):
            break
        run = Path(cfg["from_run"])
    return total


def describe_plan(cfg: dict[str, Any], device: torch.device) -> str:
    """The plan line: what translates, and a hint when the discover run's generator trained only briefly."""
    run = Path(cfg["discover_run"])
    iters = generator_iterations(run)
    line = (f"plan: tunit trains nothing: the discover run's generator ({iters} iterations) translates at "
            f"{cfg['img_size']} px on {device}")
    if iters < PREVIEW_ITERS:
        line += (f"\n  {iters} generator iterations give a rough preview: for translations worth keeping, train "
                 f"--model srunit or ugatit, or continue the run: i2icurate discover {cfg['source']} --from {run} "
                 f"--iters {PREVIEW_ITERS} --warmup-frac 0.02")
    return line


def defaults_from_run(run_cfg: dict[str, Any]) -> dict[str, Any]:
    """Translate at the size the discover run trained at."""
    return {"img_size": run_cfg["img_size"]}


def _resize_u8(images: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float()
    x = resize_square(x, size)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


class Translator:
    """Wraps the discover run's generator; `translate` maps any image to the target domain's mean style."""

    def __init__(self, cfg: dict[str, Any], domain_a: np.ndarray, domain_b: np.ndarray, device: torch.device,
                 dist: Dist = SINGLE):  # noqa: ARG002 - nothing is trained, so nothing is distributed
        run = Path(cfg["discover_run"])
        self.run_cfg = read_json(run / "config.json")
        self.size = self.run_cfg["img_size"]
        self.device = device
        self.guiding, self.generator = load_trained(run, self.run_cfg, device)
        _, styles = embed(self.guiding, _resize_u8(domain_b, self.size), device)
        self.style = torch.from_numpy(styles.mean(axis=0, keepdims=True)).to(device)
        self.step_count = 0

    def state_dict(self) -> dict[str, Any]:
        """Only the style code: the networks stay in the discover run."""
        return {"step": 0, "style": self.style.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the style code."""
        self.style = state["style"].to(self.device)

    def samples(self) -> dict[str, torch.Tensor]:
        """No training pictures."""
        return {}

    @torch.no_grad()
    def translate(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] -> the same images in the target style, at the input's size."""
        size = x.shape[-1]
        inp = resize_square(x, self.size)
        out = self.generator.decode(self.generator.encode(inp), self.style.expand(len(x), -1))
        if size != self.size:
            out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
        return out.float().clamp(-1, 1)
