"""The NAT / NATv2 archive: initialisation, pre-processing, update policies (methods.md §4.3-4.4).

The archive is a list of records (the same dicts :class:`~shiftnas.engine.archive.Archive` stores:
key, arch, genome, metrics, supernet version), unique by decoded architecture.

* Initialisation ``genome-uniform`` (NAT): every gene uniform in its bounds, then repaired.
  ``architecture-space`` (NATv2): each optional layer of a stage is present with probability 2/3
  and a skipped layer ends the stage ("fill"), so with two optional slots P(d=min) = 1/3,
  P(d=min+1) = 2/9, P(d=max) = 4/9; kernel/expand and resolution uniform.
* Pre-processing (NATv2): evaluate ``oversample`` x size - 2 initial architectures, keep the best
  size - 2 by rank and crowding, add the smallest and the largest network.
* Update ``grow`` (NAT) appends the new candidates; ``bounded`` (NATv2) appends them and then
  survives back to the archive size, before the supernet is adapted.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding

from ...errors import ConfigError
from ...search_spaces import Arch, ElasticMobileNetSpace, SearchSpace
from .base import objective_matrix

INIT_POLICIES = ("genome-uniform", "architecture-space")
UPDATE_POLICIES = ("grow", "bounded")


def sample_genome_uniform(space: SearchSpace, rng: np.random.Generator) -> Arch:
    """NAT: every gene uniform over its integer bounds (skips are rare: depth is mostly maximal)."""
    lo, hi = space.bounds
    return space.decode(rng.integers(lo, hi + 1))


def sample_architecture_space(space: SearchSpace, rng: np.random.Generator) -> Arch:
    """NATv2: optional layers kept with probability 2/3 until the first skip; choices uniform."""
    if not isinstance(space, ElasticMobileNetSpace):  # a table or ResNet: the space's own uniform sampler
        return space.sample(rng)
    spec = space.spec
    choices = spec.layer_choices
    stages = []
    for s in range(spec.n_stages):
        depth, deepest = min(spec.depths_of(s)), max(spec.depths_of(s))
        while depth < deepest and rng.random() >= 1 / 3:
            depth += 1
        stages.append(tuple(choices[int(rng.integers(len(choices)))] for _ in range(depth)))
    return Arch(stages=tuple(stages), resolution=int(rng.choice(spec.resolutions)))


def initial_architectures(
    space: SearchSpace, n: int, policy: str, rng: np.random.Generator, exclude: set[str] = frozenset()
) -> list[Arch]:
    """``n`` distinct architectures drawn by ``policy`` (none of the keys in ``exclude``)."""
    if policy not in INIT_POLICIES:
        raise ConfigError(f"unknown archive initialisation '{policy}'; choose one of: {', '.join(INIT_POLICIES)}")
    draw = sample_genome_uniform if policy == "genome-uniform" else sample_architecture_space
    out: dict[str, Arch] = {}
    for _ in range(200 * n):
        if len(out) >= n:
            break
        arch = draw(space, rng)
        if arch.key() not in exclude:
            out.setdefault(arch.key(), arch)
    return list(out.values())


def survive(records: list[dict[str, Any]], n: int, columns: list[str], seed: int = 0) -> list[dict[str, Any]]:
    """The ``n`` best records by non-dominated rank, then crowding distance (pymoo's RankAndCrowding).

    With one objective this is a plain sort. Order of the result: as in ``records``.
    """
    if len(records) <= n:
        return list(records)
    F = objective_matrix(records, columns)
    if F.shape[1] == 1:
        keep = np.argsort(F[:, 0], kind="stable")[:n]
    else:
        pop = Population.new("F", F, "index", np.arange(len(records)))
        problem = Problem(n_var=1, n_obj=F.shape[1])  # only tells survival there are no constraints
        survivors = RankAndCrowding().do(problem, pop, n_survive=n, random_state=np.random.default_rng(seed))
        keep = survivors.get("index")
    return [records[i] for i in sorted(int(i) for i in keep)]


def preprocess(
    space: SearchSpace,
    size: int,
    oversample: int,
    policy: str,
    evaluate: Callable[[Arch], dict],
    columns: list[str],
    rng: np.random.Generator,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """NATv2 pre-processing: evaluate ``oversample x size - 2`` samples, keep ``size - 2``, add the extremes."""
    extremes = [space.smallest(), space.largest()]
    pool = initial_architectures(space, oversample * size - 2, policy, rng, {a.key() for a in extremes})
    kept = survive([evaluate(a) for a in pool], size - 2, columns, seed)
    return kept + [evaluate(a) for a in extremes]


def initial_archive(
    space: SearchSpace,
    size: int,
    policy: str,
    evaluate_all: Callable[[list[Arch]], list[dict[str, Any]]],
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """NAT: the smallest and largest networks plus ``size - 2`` samples, all evaluated (as one batch)."""
    extremes = [space.smallest(), space.largest()]
    pool = initial_architectures(space, size - 2, policy, rng, {a.key() for a in extremes})
    return evaluate_all(pool + extremes)


def update_archive(
    archive: list[dict[str, Any]],
    candidates: list[dict[str, Any]],
    policy: str,
    size: int,
    columns: list[str],
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Add ``candidates`` (deduplicated on the architecture); ``bounded`` then survives back to ``size``."""
    if policy not in UPDATE_POLICIES:
        raise ConfigError(f"unknown archive update '{policy}'; choose one of: {', '.join(UPDATE_POLICIES)}")
    seen = {r["key"] for r in archive}
    merged = list(archive) + [c for c in candidates if c["key"] not in seen and not seen.add(c["key"])]
    return merged if policy == "grow" else survive(merged, size, columns, seed)
