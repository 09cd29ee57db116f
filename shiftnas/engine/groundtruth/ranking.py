"""How well a supernet ranks architectures: its val-split scores against a ground-truth table."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import replace
from typing import Any

import torch.nn as nn

from ...config import EvalConfig
from ...data import DataSplits
from ...errors import ShiftnasError
from ...predictors.ranking import ranking_report
from ...search_spaces import SearchSpace
from ..evaluation.subnet import SubnetEvaluator
from .table import GroundTruthTable, data_identity


def rank_supernet(
    space: SearchSpace,
    supernet: nn.Module,
    data: DataSplits,
    table: GroundTruthTable,
    eval_cfg: EvalConfig,
    exclude: Set[str] = frozenset(),
) -> dict[str, Any]:
    """Score every table architecture not in ``exclude`` through ``supernet`` and rank against the truth.

    Scores are supernet top-1 accuracies (%) on every image of ``data.val`` after BN recalibration
    (:class:`SubnetEvaluator`); the truth is the table's mean stand-alone *test* accuracy.
    ``exclude`` holds architecture keys to leave out (e.g. landmarks the supernet was trained
    to rank). ``data`` must have the table's val and test splits (same labels), so the ground-truth
    test images are held out from the supernet's training set too (the train split may differ).

    Returns ``{'report': ranking_report(...), 'scores': {key: score}, 'truth': {key: accuracy},
    'excluded': [keys left out that were in the table], 'n': count}``.
    """
    table_labels = table.meta.get("data", {}).get("labels_sha1") or {}
    labels = data_identity(data)["labels_sha1"]
    if any(table_labels.get(split) != labels[split] for split in ("val", "test")):
        raise ShiftnasError(
            f"ground-truth table {table.path} was made on a different data split "
            f"({table.meta.get('data', {}).get('summary')}) than {data.summary()}"
        )
    keys = [k for k in table.keys() if k not in exclude]
    if len(keys) < 2:
        raise ShiftnasError(
            f"need at least 2 ground-truth architectures to rank, got {len(keys)} "
            f"({len(table)} in the table, {len(table) - len(keys)} excluded)"
        )
    archs = {row["key"]: row["arch"] for row in table.rows()}
    for key in keys:
        try:
            space.validate(archs[key])
        except ValueError as err:
            raise ShiftnasError(f"table architecture {key} is not in space '{space.name}': {err}") from None
    was_training = supernet.training
    evaluator = SubnetEvaluator(space, supernet, data, replace(eval_cfg, val_images="all"))  # exact scores
    scores = {key: evaluator.score(archs[key], "val").accuracy for key in keys}
    supernet.train(was_training)
    truth = {key: table.accuracy(key) for key in keys}
    report = ranking_report([scores[k] for k in keys], [truth[k] for k in keys])
    excluded = [k for k in table.keys() if k in exclude]
    return {"report": report, "scores": scores, "truth": truth, "excluded": excluded, "n": len(keys)}
