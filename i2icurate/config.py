"""The single source of options: every CLI flag and Python-API keyword is declared here once.

Each command owns a table of `Option`s. Presets are named override sets applied before explicit values, so
`--preset tiny --iters 50` means "the tiny preset, but 50 iterations". The CLI turns every option into a flag with
the same name (underscores become dashes); the Python API takes the same names as keywords.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from i2icurate.errors import UserError


@dataclass(frozen=True)
class Option:
    """One option: its name (a Python identifier), default, help text and the values it accepts."""

    name: str
    default: Any
    help: str
    type: type = str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None


AUTO = "auto"
CONTENT = "content"  # the default of --domains, and what runs made before that option used
STYLE = "style"
SCRATCH_K = 10  # K of a from-scratch trunk when -k is not given: it has no features to choose K from before training


def k_or_auto(value: Any) -> int | str:
    """A number of clusters, or 'auto': choose it from the data (a sweep over --k-range)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"expected a whole number of clusters or 'auto', got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of clusters or 'auto', got {value!r}") from None


def k_range(value: Any) -> str:
    """'MIN:MAX', the numbers of clusters an auto-K sweep tries (2 <= MIN <= MAX <= 1000), normalised."""
    low, high = parse_k_range(str(value))
    return f"{low}:{high}"


def parse_k_range(text: str) -> tuple[int, int]:
    """(MIN, MAX) of a 'MIN:MAX' K range; ValueError with a readable message when it is not one."""
    parts = text.strip().split(":")
    try:
        low, high = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None or high is None:
        raise ValueError(f"expected MIN:MAX, two whole numbers such as 2:30, got {text!r}")
    if not 2 <= low <= high <= 1000:
        raise ValueError(f"{text!r} must satisfy 2 <= MIN <= MAX <= 1000")
    return low, high


def _opts(*options: Option) -> dict[str, Option]:
    return {o.name: o for o in options}


# Options shared by every training command: where runs go and how the hardware is used.
RUN_OPTIONS = (
    Option("project", "runs", "Folder that holds run folders (runs/<command>/<name>N/)."),
    Option("name", "exp", "Run name; a number is appended so earlier runs are never overwritten."),
    Option("seed", 0, "Random seed (weights, sampling, augmentation).", int, 0),
    Option("device", "auto", "Device: auto (cuda if available), cpu, cuda or cuda:N."),
    Option("precision", "auto", "auto = bf16 autocast on CUDA and fp32 on CPU (translate's CPU plan picks bf16 for "
           "U-GAT-IT where the CPU computes it natively).", str, choices=("auto", "fp32", "bf16")),
    Option("workers", 0, "Processes decoding images (0 = one per CPU core, at most 8).", int, 0, 64),
    Option("threads", 0, "CPU threads torch computes with (0 = auto: OMP_NUM_THREADS if set, else the cores this "
           "process may use: CPU affinity and cgroup quota). On a machine shared with other jobs, give fewer.", int,
           0, 1024),
    Option("log_every", 50, "Write scalars to TensorBoard and stats.jsonl every N iterations.", int, 1),
    Option("sample_every", 1000, "Write image grids to TensorBoard every N iterations.", int, 1),
    Option("ckpt_every", 1000, "Save last.pt every N iterations (also on Ctrl-C and at the end).", int, 1),
)

# How a trainer uses the GPU; none of these changes the losses. "auto" picks what bench/train_speed.py measured best.
SPEED_OPTIONS = (
    Option("channels_last", "auto", "Channels-last memory format (auto = on for CUDA).", str,
           choices=("auto", "on", "off")),
    Option("fused_optim", "auto", "Fused (Adam) and multi-tensor (RMSprop) optimiser steps (auto = on for CUDA).", str,
           choices=("auto", "on", "off")),
    Option("compile", "auto", "torch.compile the guiding network and generator (auto = off until measured to pay; "
           "the discriminator stays eager because R1 needs a double backward).", str, choices=("auto", "on", "off")),
    Option("r1_every", 1, "Lazy R1: compute the penalty every N discriminator steps, weighted by N (1 = every step, "
           "as in the paper).", int, 1, 64),
)

MAX_PIXELS = Option("max_pixels", 100_000_000, "Skip images with more pixels than this (decompression-bomb guard).",
                    int, 1)

# Options that control how the input folder is read.
INPUT_OPTIONS = (
    MAX_PIXELS,
    Option(
        "eval_labels",
        "",
        "Score clusters against labels: 'folders' (parent folder name) or a CSV with path,label columns.",
    ),
)

DISCOVER = _opts(
    Option("k", AUTO, "Number of pseudo-domains (clusters), or 'auto' (the default): choose it from the pretrained "
           "trunk's features by a sweep over --k-range (docs/discover.md); a from-scratch trunk without -k uses "
           f"{SCRATCH_K}.", k_or_auto, 2, 1000),
    Option("k_range", "2:30", "MIN:MAX, the numbers of clusters -k auto tries (clipped to half the number of "
           "images; with --labels, at least the labelled clusters).", k_range),
    Option("backbone", "efficientnet-lite0", "Guiding network trunk: vgg11 (TUNIT's, trained from scratch), "
           "efficientnet-lite0/1/2 (ImageNet weights from registry packages, offline), a torchvision model name "
           "(weights from the torch cache, downloaded once where online) or a weights file (ARCH:PATH)."),
    Option("backbone_size", 0, "Pixels the pretrained trunk reads (0 = the plan's choice: 64 on CPU, 128 on GPU).",
           int, 0, 512),
    Option("domains", CONTENT, "What the clusters of a pretrained trunk separate: 'content', what the images show "
           "(the trunk's pooled features and channel statistics), or 'style', how they are rendered (typeface, medium, "
           "colour or line-art: the trunk's channel and Gram statistics beside low-level rendering statistics, without "
           "the pooled features); docs/discover.md.", str, choices=("content", "style")),
    Option("heads", 5, "Class heads trained together on a pretrained trunk; the run assigns with the best one.",
           int, 1, 32),
    Option("pca_dim", 64, "Size of the descriptor the heads read (principal axes of the trunk's features).", int, 8,
           1024),
    Option("style_weight", 1.0, "Weight of the trunk's channel statistics (style) beside its pooled features "
           "(content) in the descriptor.", float, 0.0, 10.0),
    Option("crop_weight", 0.5, "With --domains style: weight of what an image's crops agree on (16 columns) beside "
           "its whole-image statistics in the descriptor; 0 leaves them out. Measured with the style plan's 64 px "
           "decode (bench/RESULTS.md, session 27): 0.5 takes four typefaces to 0.88 and the photo renderings to "
           "0.95, where 0.3 left the typefaces at 0.69 and 0.7 the photos at 0.94.", float, 0.0, 10.0),
    Option("content_centring", 0.0, "With --domains style: share of the mean descriptor of the image's layout group "
           "(16 k-means groups of its edge map's trunk features: the same letter, scene or emoji in every style) "
           "taken out of its descriptor, so that what an image shows leaves the style statistics; 0.75 with "
           "--domains style (DOMAIN_DEFAULTS), 0 = none.", float, 0.0, 1.0),
    Option("knn", 20, "Neighbours per image for the heads' consistency loss (SCAN); 50 with --domains style "
           "(DOMAIN_DEFAULTS).", int, 1, 200),
    Option("w_entropy", 5.0, "Weight of the heads' entropy term, which keeps every cluster in use.", float, 0.0),
    Option("w_independence", 0.0, "Weight of the heads' content-independence term: the mutual information between "
           "an image's cluster and what it shows (groups of its edge map's trunk features), for a style run, where a "
           "cluster should hold every kind of content; 0 by default, since --content-centring takes what the images "
           "show out of a style run's descriptor (docs/discover.md).", float, 0.0),
    Option("w_neighbourhood", 0.0, "Weight of the heads' neighbourhood term: the clusters of each image and its K - 1 "
           "nearest images by edge map should spread as the folder's do; 1 with --domains style (DOMAIN_DEFAULTS), "
           "where the nearest outline is often the same thing in another domain.", float, 0.0),
    Option("head_views", 2, "Views of each image the class heads' consistency pairs are drawn from: 2 = as decoded and "
           "mirrored, 1 = as decoded only (the --domains style default, DOMAIN_DEFAULTS: a mirrored italic slants the "
           "other way).", int, 1, 2),
    Option("head_batch", 512, "Images per update of the heads (on cached features).", int, 8, 65536),
    Option("head_temperature", 0.1, "Temperature of the heads' cosine prototypes at initialisation.", float, 1e-3,
           10.0),
    Option("lr_heads", 1e-2, "Learning rate of the class heads on a pretrained trunk (Adam).", float, 0.0),
    Option("img_size", 128, "Training image size in pixels (square).", int, 32, 256),
    Option("batch_size", 32, "Images per iteration.", int, 2, 4096),
    Option("iters", 200_000, "Training iterations.", int, 1),
    Option("warmup_frac", 0.325, "Share of iterations training the guiding network alone (65k of 200k).", float, 0, 1),
    Option("ema_g_delay", 0.005, "Start the generator EMA this share of iterations after the warm-up.", float, 0, 1),
    Option("style_dim", 128, "Style-code size.", int, 2, 2048),
    Option("e_width", 64, "Guiding network base width (VGG-11 plan 64..512 scaled by width/64).", int, 4, 512),
    Option("g_width", 0, "Generator base width (0 = 64 below 256 px, 32 at 256 px).", int, 0, 512),
    Option("d_width", 0, "Discriminator base width (0 = 64 below 256 px, 32 at 256 px).", int, 0, 512),
    Option("d_max_width", 1024, "Discriminator channel cap.", int, 8, 4096),
    Option("mlp_width", 256, "Width of the style MLP that produces AdaIN parameters.", int, 8, 4096),
    Option("queue_size", 1024, "Style-contrastive (MoCo) queue length.", int, 1),
    Option("temperature", 0.07, "Style-contrastive temperature.", float, 1e-4, 10.0),
    Option("w_iic", 5.0, "Weight of the IIC mutual-information loss.", float, 0.0),
    Option("w_moco", 1.0, "Weight of the guiding network's style-contrastive loss.", float, 0.0),
    Option("e_scale_gan", 0.1, "Scale of the guiding network's own loss once the GAN phase starts.", float, 0.0),
    Option("w_adv", 1.0, "Adversarial weight for the generator.", float, 0.0),
    Option("w_rec", 0.1, "L1 reconstruction weight.", float, 0.0),
    Option("w_sty", 0.01, "Generator style-contrastive weight.", float, 0.0),
    Option("w_r1", 10.0, "R1 penalty weight on real images.", float, 0.0),
    Option("w_sup", 1.0, "Cross-entropy weight on labelled images (semi-supervised runs).", float, 0.0),
    Option("w_anchor", 2.0, "Retraining from a reviewed run (--labels with --from): cross-entropy weight pulling the "
           "unlabelled images toward their cluster in that run (see the two free shares).", float, 0.0),
    Option("anchor_free_share", 0.05, "Retraining from a reviewed run: share of each untouched cluster, its least "
           "confident images in that run, left unanchored, free to follow the labels (0 = anchor them all).",
           float, 0.0, 1.0),
    Option("anchor_touched_free_share", 0.25, "Retraining from a reviewed run: share of each cluster a label touched, "
           "its least confident images in that run, left unanchored (1 = leave touched clusters free).",
           float, 0.0, 1.0),
    Option("lr_e", 1e-4, "Guiding network learning rate (Adam).", float, 0.0),
    Option("wd_e", 1e-3, "Guiding network weight decay.", float, 0.0),
    Option("lr_g", 1e-4, "Generator learning rate (RMSprop).", float, 0.0),
    Option("lr_d", 1e-4, "Discriminator learning rate (RMSprop).", float, 0.0),
    Option("wd_gd", 1e-4, "Generator and discriminator weight decay.", float, 0.0),
    Option("ema_beta", 0.999, "EMA decay of the guiding network and generator copies.", float, 0.0, 1.0),
    Option("labels", "", "labels.csv of human labels (from `i2icurate sync`): semi-supervised training; cluster_N rows "
           "supervise the class head, exclude rows are left out, other labels count as unlabelled."),
    Option("from_run", "", "Start from this discover run's weights (fine-tuning); its network sizes are reused."),
    *RUN_OPTIONS,
    *SPEED_OPTIONS,
    *INPUT_OPTIONS,
)

# Shared by every translator; each model module adds its own options, defaults and presets (translators/base.py).
TRANSLATE = _opts(
    Option("img_size", 256, "Training and output image size in pixels (square).", int, 32, 512),
    Option("batch_size", 1, "Image pairs per iteration.", int, 1, 1024),
    Option("iters", 200_000, "Training iterations.", int, 1),
    Option("minutes", 30.0, "Without --iters: train for about this many minutes, the iterations sized by timing a "
           "few steps on this machine first (what the CPU plan does; on a GPU or with a preset only when given).",
           float, 0.05, 100_000),
    Option("decay_frac", 0.5, "Decay the learning rate linearly to 0 over this last share of iterations.", float, 0, 1),
    Option("lr", 2e-4, "Learning rate of every network.", float, 0.0),
    Option("min_confidence", 0.0, "Use only images assigned to their cluster with at least this confidence.", float,
           0, 1),
    *RUN_OPTIONS,
    MAX_PIXELS,
)

# What `discover --domains X` changes in the defaults (over the hardware plan); a preset and explicit values win.
# Style domains are broad (one typeface or rendering spans the folder): 50 neighbours measured better than 20 on all
# four style sets of bench/style_sets.py, with and without labels, and worse on the content sets (bench/RESULTS.md).
# A style domain holds every kind of content: the content-independence term at weight 1 raised all four style sets
# without labels (0.5 to 3 measured, session 19), until the descriptor's content centring did that job better: with
# 0.75 of the layout group's mean taken out and no independence term, seed 0's four style sets went from 0.985 / 0.923
# / 0.953 / 0.970 to 0.989 / 0.952 / 0.972 / 0.972 (two typefaces, four, photo renderings, emoji; with the term beside
# the centring at 1: 0.936 on both four typefaces and the photos; session 29). The neighbourhood term at weight 1: the
# photo renderings and the emoji up to 0.93-0.95, typefaces-4 about where it was without it (sessions 22-23).
# The class heads pair only the images as decoded, not their mirrors: mirroring turns a typeface's slant around, so a
# mirrored italic is not the same style (typefaces-4 0.899 / 0.892 -> 0.923 / 0.924 on seeds 0 / 1, the other three
# style sets within 0.3 points either way, session 28).
DOMAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "style": {"knn": 50, "w_neighbourhood": 1.0, "head_views": 1, "content_centring": 0.75}}
# Where a fresh run's labels are given they lead: with 3 labels per style the neighbourhood term lowered three of the
# four style sets (typefaces-2 0.953 -> 0.936, typefaces-4 0.796 -> 0.723, photo renderings 0.751 -> 0.685; emoji
# 0.930 -> 0.940; session 22), so such a run leaves it out unless asked for. A retrain --from a reviewed run keeps
# it: the parent's clusters were found with it, and without it the reviewers of bench/review_semi.py fell 1.9 to 3.2
# points under the unlabelled continuation on the photo renderings, where with it they gained up to 1.8 (session 23).
LABELLED_DEFAULTS: dict[str, Any] = {"w_neighbourhood": 0.0}


def run_domains(cfg: dict[str, Any]) -> str:
    """The --domains of a discover config or options (not given, or a run made before the option: content)."""
    return cfg.get("domains") or CONTENT


def domain_defaults(options: dict[str, Any]) -> dict[str, Any]:
    """What a discover run's --domains, labels and parent change in the defaults (`DOMAIN_DEFAULTS`, and
    `LABELLED_DEFAULTS` for a fresh run with labels); explicit options still win."""
    fresh_labelled = bool(options.get("labels")) and not options.get("from_run")
    return {**DOMAIN_DEFAULTS.get(run_domains(options), {}), **(LABELLED_DEFAULTS if fresh_labelled else {})}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "discover": {
        # The reference schedule and sizes (TUNIT, AnimalFaces-10): about 25 h on one H100.
        # K = SCRATCH_K: a from-scratch network has no features to choose K from (-k auto is an error there)
        "full": {"backbone": "vgg11", "k": SCRATCH_K},
        # The from-scratch VGG-11 with small networks at 32 px (kept for comparison with the default plan).
        "tiny": {
            "backbone": "vgg11",
            "k": SCRATCH_K,
            "img_size": 32,
            "batch_size": 32,
            "iters": 2000,
            "warmup_frac": 0.75,
            "ema_g_delay": 0.01,
            "ema_beta": 0.99,  # 0.999 averages over ~1000 steps: far too slow for a 2000-step run
            "style_dim": 32,
            "e_width": 16,
            "g_width": 16,
            "d_width": 16,
            "d_max_width": 128,
            "mlp_width": 64,
            "queue_size": 256,
            "lr_e": 5e-4,
            "log_every": 25,
            "sample_every": 250,
            "ckpt_every": 250,
        },
    },
}

TABLES: dict[str, dict[str, Option]] = {"discover": DISCOVER, "translate": TRANSLATE}


def _check(option: Option, value: Any) -> Any:
    """Coerce a value to the option's type and check its range; raise UserError with the option's name."""
    flag = "--" + option.name.replace("_", "-")
    try:
        value = option.type(value)
    except (TypeError, ValueError) as exc:
        if option.type in (int, float, str, bool):
            raise UserError(f"{flag}: expected {option.type.__name__}, got {value!r}") from None
        raise UserError(f"{flag}: {exc}") from None
    if option.choices is not None and value not in option.choices:
        raise UserError(f"{flag}: {value!r} is not one of {', '.join(option.choices)}")
    if not isinstance(value, int | float):  # e.g. -k auto
        return value
    if option.min is not None and value < option.min:
        raise UserError(f"{flag}: {value} is below the minimum {option.min:g}")
    if option.max is not None and value > option.max:
        raise UserError(f"{flag}: {value} is above the maximum {option.max:g}")
    return value


def resolve_table(
    what: str,
    table: dict[str, Option],
    presets: dict[str, dict[str, Any]],
    preset: str | None,
    overrides: dict[str, Any],
    defaults: dict[str, Any] | None = None,
    elsewhere: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Option defaults, then `defaults`, then the preset, then explicit overrides (None means 'not given').

    Unknown keys get a did-you-mean, or, when `elsewhere` maps them to the owner, a pointer to where they belong.
    """
    if preset is not None and preset not in presets:
        raise UserError(f"unknown preset {preset!r} for {what}; choose from {', '.join(presets)}")
    values = {name: opt.default for name, opt in table.items()}
    values.update(defaults or {})
    values.update(presets.get(preset or "", {}))
    for key, value in overrides.items():
        if key not in table:
            if value is None:
                continue
            if elsewhere and key in elsewhere:
                raise UserError(f"--{key.replace('_', '-')} is an option of {elsewhere[key]}, not {what}")
            close = difflib.get_close_matches(key, table, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"unknown option '{key}' for {what}{hint}")
        if value is not None:
            values[key] = value
    return {name: _check(table[name], value) for name, value in values.items()}


# How the hardware is used, not what is computed: these may change when a run is resumed.
RESUME_OVERRIDES = ("threads",)


def reject_options_on_resume(options: dict[str, Any]) -> None:
    """`--resume` continues with the run's saved options: refuse explicitly given ones, naming their flags."""
    given = sorted("--" + k.replace("_", "-") for k, v in options.items()
                   if v is not None and k not in RESUME_OVERRIDES)
    if given:
        raise UserError(f"--resume continues a run with its saved options; drop {', '.join(given)}")


def resolve(command: str, preset: str | None = None, defaults: dict[str, Any] | None = None,
            **overrides: Any) -> dict[str, Any]:
    """A command's options: defaults (the table's, then `defaults`, e.g. a hardware plan), then the preset, then
    explicit overrides."""
    return resolve_table(command, TABLES[command], PRESETS.get(command, {}), preset, overrides, defaults)
