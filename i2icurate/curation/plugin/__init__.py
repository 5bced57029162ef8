"""FiftyOne plugin `@i2icurate/review`: relabel selected samples of an i2icurate dataset from the App.

FiftyOne loads this file from its plugins folder (i2icurate points FIFTYONE_PLUGINS_DIR at a folder linking it, see
i2icurate/curation/fo_env.py). The operators write the `human_label` Classification field; `i2icurate sync` turns it
into rows of the run's labels.csv.
"""

from __future__ import annotations

import re

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

HUMAN_FIELD = "human_label"  # the same name as i2icurate.curation.dataset.HUMAN_FIELD
EXCLUDE = "exclude"
NEW_CLUSTER = "new_cluster"


def cluster_count(dataset: fo.Dataset) -> int:
    """K of the discover run: stored in the dataset info by `i2icurate review`, else the largest pseudo label + 1."""
    k = (dataset.info or {}).get("i2icurate_k")
    if k:
        return int(k)
    labels = dataset.distinct("pseudo_domain.label") if dataset.has_field("pseudo_domain") else []
    ids = [int(m.group(1)) for label in labels if (m := re.fullmatch(r"cluster_(\d+)", label or ""))]
    return max(ids, default=-1) + 1


def label_choices(k: int) -> list[tuple[str, str]]:
    """(stored label, what the reviewer reads) for clusters 0..K-1, 'exclude' and 'new cluster'."""
    return [(f"cluster_{c}", f"cluster {c}") for c in range(k)] + [
        (EXCLUDE, "exclude (drop from training)"), (NEW_CLUSTER, "new cluster (none of these)")]


def target_ids(ctx) -> list[str]:
    """The samples selected in the grid, or the sample open in the modal when nothing is selected."""
    ids = list(ctx.selected)
    if not ids and getattr(ctx, "current_sample", None):
        ids = [ctx.current_sample]
    return ids


class AssignCluster(foo.Operator):
    """Assign the selected samples to cluster N (or exclude them, or mark them as a new cluster)."""

    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(name="assign_cluster", label="Assign selected samples to cluster N",
                                  description="Write a human label on the selected samples; `i2icurate sync` "
                                              "saves it into the run's labels.csv")

    def resolve_input(self, ctx):
        inputs = types.Object()
        count = len(target_ids(ctx))
        if count == 0:
            inputs.view("none", types.Warning(label="Select samples in the grid first"))
        choices = types.Dropdown(label=f"Label for the {count} selected sample(s)")
        for value, label in label_choices(cluster_count(ctx.dataset)):
            choices.add_choice(value, label=label)
        inputs.enum("label", choices.values(), required=True, view=choices)
        return types.Property(inputs, view=types.View(label="Assign selected samples to cluster N"))

    def execute(self, ctx):
        label = ctx.params.get("label")
        allowed = {value for value, _ in label_choices(cluster_count(ctx.dataset))}
        if label not in allowed:
            raise ValueError(f"unknown label {label!r}; choose one of {sorted(allowed)}")
        ids = target_ids(ctx)
        if not ids:
            raise ValueError("no samples selected")
        ctx.dataset.set_values(HUMAN_FIELD, {sid: fo.Classification(label=label) for sid in ids}, key_field="id")
        if ctx.executor is not None:  # None when run outside the App
            ctx.ops.reload_dataset()
            ctx.ops.notify(f"{len(ids)} sample(s) labelled {label}; run `i2icurate sync` to save", variant="success")
        return {"assigned": len(ids), "label": label}


class ClearHumanLabel(foo.Operator):
    """Remove the human label of the selected samples (before `i2icurate sync`; a synced label stays in labels.csv)."""

    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(name="clear_human_label", label="Clear the human label of the selected samples")

    def execute(self, ctx):
        ids = target_ids(ctx)
        if ids:
            ctx.dataset.set_values(HUMAN_FIELD, dict.fromkeys(ids), key_field="id")
            if ctx.executor is not None:
                ctx.ops.reload_dataset()
        return {"cleared": len(ids)}


def register(plugin) -> None:
    """Called by FiftyOne when it loads the plugin."""
    plugin.register(AssignCluster)
    plugin.register(ClearHumanLabel)
