"""What a run must have for its rows to be published under ``results/`` (``run --publish``,
which ``make publish`` passes): the rule of this project's published answers, checked before any
cell starts, so a run that could not be published is refused (exit 2) rather than written.

- at least :data:`PUBLISH_MIN_SEEDS` seeds: one seed's verdict can flip between two CPUs with
  the same code and data (resnet18 droppools and repeat3 did, 92.6/92.2 against 91.7/92.5); the
  findings' own floor, ``bench.report.findings.MIN_SEEDS`` (2), is when any claim may be made,
  a lower bar than what is published;
- a validation split (``val_size`` > 0), carved from train, that any model selection, early
  stop or recipe choice is made on, so the test split is scored once, at the end.

``gpu-quick`` (one seed) is the lease's check of the GPU path and is refused here on purpose;
its rows stay in the directory the check wrote (docs/gpu-check.md).
"""

from __future__ import annotations

from typing import Any

PUBLISH_MIN_SEEDS = 3


def publish_problem(cfg: Any, profile: str = "") -> str:
    """Why ``cfg`` (a :class:`bench.config.Config`) cannot be published, or '' when it can.

    ``profile`` names the profile in the message.
    """
    named = f"profile {profile}" if profile else "this config"
    problems = []
    seeds = sorted(cfg.seeds)
    if len(seeds) < PUBLISH_MIN_SEEDS:
        problems.append(f"seeds = {seeds} (a published run needs at least {PUBLISH_MIN_SEEDS}, "
                        "e.g. --set seeds=0,1,2)")
    if cfg.val_size <= 0:
        problems.append(f"val_size = {cfg.val_size} (a published run needs a validation split "
                        "carved from train, e.g. --set val_size=500)")
    if not problems:
        return ""
    return f"{named} cannot be published: " + "; ".join(problems)
