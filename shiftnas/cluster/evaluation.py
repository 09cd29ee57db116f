"""Accuracy through the supernet scored on Dask workers that own the ``eval`` resource.

A worker gets, once, what every score of a run needs (the space, the BN-recalibration subset, the
val / test splits, the eval config and precision: :class:`EvaluationContext`), and once per supernet
weights version the weights themselves (:class:`SupernetWeights`). It builds one
:class:`SubnetEvaluator` per version from them, so its scores equal the local evaluator's: same
calibration images in the same order, same splits, same code. Shifting and NAT adaptation bump the
local version; the next batch of scores then sends the new weights first.

Start the workers with one ``eval`` slot per GPU or CPU socket::

    dask worker tcp://SCHEDULER:8786 --nthreads 1 --resources "eval=1"
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.data import TensorDataset

from ..config import EvalConfig
from ..data import DataSplits
from ..engine.evaluation.validation_subset import ValidationSubset
from ..search_spaces import Arch, arch_from_dict, space_from_description
from .pool import DaskPool, relax_malloc_trim

RESOURCE = "eval"
KEEP_VERSIONS = 2  # evaluators a worker keeps (the current weights and the previous ones)


@dataclass
class EvaluationContext:
    """What every score of one evaluator needs besides the weights (sent to each worker once)."""

    token: str  # unique per local evaluator
    space: dict[str, Any]  # SearchSpace.describe()
    data: DataSplits  # train holds only the BN-recalibration subset (labels unused)
    cfg: EvalConfig
    precision: str
    val_subset: ValidationSubset | None = None  # the local evaluator's stratified validation subset


@dataclass
class SupernetWeights:
    """One version of the supernet weights (sent to each worker once per version)."""

    supernet_id: str
    version: int
    state_dict: dict[str, torch.Tensor]

    @property
    def token(self) -> str:
        return f"{self.supernet_id}:{self.version}"


_EVALUATORS: OrderedDict[tuple[str, str], Any] = OrderedDict()  # on a worker: (context, weights) -> evaluator
LOADED: list[str] = []  # on a worker: every weights token it built an evaluator for, in order


def _evaluator_on_worker(context: EvaluationContext, weights: SupernetWeights):
    from ..engine.evaluation.subnet import SubnetEvaluator

    key = (context.token, weights.token)
    if key not in _EVALUATORS:
        space = space_from_description(context.space)
        supernet = space.build_supernet(context.data.num_classes)
        supernet.load_state_dict(weights.state_dict)
        _EVALUATORS[key] = SubnetEvaluator(
            space,
            supernet.eval(),
            context.data,
            context.cfg,
            version=weights.version,
            precision=context.precision,
            calibration=context.data.train.tensors[0],
            val_subset=context.val_subset,
        )
        LOADED.append(weights.token)
        while len(_EVALUATORS) > KEEP_VERSIONS:
            _EVALUATORS.popitem(last=False)
    _EVALUATORS.move_to_end(key)
    return _EVALUATORS[key]


def score_job(job: tuple[dict[str, Any], str], context: EvaluationContext, weights: SupernetWeights) -> float:
    """Run on a worker: the accuracy (%) of ``job = (arch dict, split)`` under ``weights``."""
    relax_malloc_trim()
    arch, split = job
    return _evaluator_on_worker(context, weights).score(arch_from_dict(arch), split).accuracy


def loaded_on_worker() -> list[str]:
    """Run on a worker: the weights tokens it has built evaluators for (tests, diagnostics)."""
    return list(LOADED)


class RemoteScorer:
    """Scores architectures of local :class:`SubnetEvaluator` s on the ``eval`` workers of ``pool``."""

    def __init__(self, pool: DaskPool) -> None:
        self.pool = pool
        self._contexts: dict[int, Any] = {}  # id(evaluator) -> future of its context
        self._weights: dict[int, tuple[str, Any]] = {}  # id(evaluator) -> (weights token, future)
        self.n_batches = 0

    def _context(self, evaluator) -> Any:
        if id(evaluator) not in self._contexts:
            data = evaluator.data
            calibration = evaluator.calibration
            slim = DataSplits(
                name=data.name,
                train=TensorDataset(calibration, torch.zeros(len(calibration), dtype=torch.long)),
                val=data.val,
                test=data.test,
                num_classes=data.num_classes,
                image_size=data.image_size,
                mean=data.mean,
                std=data.std,
            )
            subset = evaluator.validation_subset()  # built here once, so every worker scores the same images
            context = EvaluationContext(
                f"{evaluator.supernet_id}:{id(evaluator)}",
                evaluator.space.describe(),
                slim,
                evaluator.cfg if subset is not None else replace(evaluator.cfg, val_images="all"),
                evaluator.precision,
                subset,
            )
            self._contexts[id(evaluator)] = self.pool.share(context)
        return self._contexts[id(evaluator)]

    def _current_weights(self, evaluator) -> Any:
        token = f"{evaluator.supernet_id}:{evaluator.version}"
        held = self._weights.get(id(evaluator))
        if held is None or held[0] != token:
            state = {k: v.detach().clone() for k, v in evaluator.supernet.state_dict().items()}
            weights = SupernetWeights(evaluator.supernet_id, evaluator.version, state)
            self._weights[id(evaluator)] = (token, self.pool.share(weights))
        return self._weights[id(evaluator)][1]

    def close(self) -> None:
        self.pool.close()

    def accuracies(self, evaluator, archs: list[Arch], split: str = "val") -> list[float]:
        """The accuracies (%) of ``archs`` on ``split`` under ``evaluator``'s current weights, in order."""
        context, weights = self._context(evaluator), self._current_weights(evaluator)
        futures = [self.pool.submit(score_job, (a.to_dict(), split), context, weights) for a in archs]
        self.n_batches += 1
        return [float(x) for x in self.pool.gather(futures)]


def connect_scorer(address: str, task_timeout: float | None = 600.0, retries: int = 1) -> RemoteScorer | None:
    """A scorer on the ``eval`` workers of the scheduler at ``address``; None when it has none."""
    pool = DaskPool(address, RESOURCE, task_timeout=task_timeout, retries=retries, require_workers=False)
    if pool.n_workers == 0:
        pool.close()
        return None
    return RemoteScorer(pool)
