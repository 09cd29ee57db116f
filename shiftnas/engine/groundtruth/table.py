"""The ground-truth table: stand-alone accuracy of sampled architectures (methods.md §6 item 7).

On disk a table is two files:

* ``PATH`` (JSONL, append-only): one record per trained (architecture, seed)::

      {"key", "arch", "seed", "val_accuracy", "test_accuracy", "val_loss", "test_loss", "seconds",
       "macs", "params"}

  ``arch`` is ``Arch.to_dict()``; accuracies in percent, losses mean cross-entropy (tables made
  before losses were recorded lack them); ``macs``/``params`` are those of the
  extracted subnet (``count_macs`` at batch 1, ``count_params``), identical for every seed.
* ``PATH.with_suffix('.meta.json')``: what the records were made with: ``space``
  (``space.describe()``), ``data`` (summary, name, hash of the split labels), ``recipe`` and
  ``seeds`` (every seed ever requested). Appending with a different space, data or recipe is
  refused; new architectures or seeds may be added to an existing table.

A build is resumable: an interrupted build (Ctrl-C, crash) keeps every finished record, and the
next build skips every (key, seed) already present.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...config import StandaloneRecipe
from ...data import DataSplits
from ...errors import ConfigError, ShiftnasError
from ...hardware.macs import count_macs, count_params
from ...io import append_jsonl, atomic_write_json, atomic_write_text, drop_torn_line, read_jsonl
from ...search_spaces import Arch, SearchSpace, arch_from_dict
from ...seeding import one_torch_thread
from ..training.standalone import fresh_subnet, train_standalone

if TYPE_CHECKING:
    from ...cluster.pool import DaskPool

FORMAT = "shiftnas-groundtruth/1"
GroundTruthProgress = Callable[[int, int, dict], None]  # (records done, records total, new record)
CSV_COLUMNS = (
    "key",
    "mean_test_accuracy",
    "std_test_accuracy",
    "mean_val_accuracy",
    "n_seeds",
    "mmacs",
    "params_m",
    "arch",
)


def meta_path(path: str | Path) -> Path:
    """The metadata file that sits beside the table ``path``."""
    return Path(path).with_suffix(".meta.json")


# ----------------------------------------------------------------------------- sampling


def sample_architectures(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """``n`` distinct architectures: the smallest, the largest, then uniform random samples."""
    if n < 2:
        raise ConfigError(f"need at least 2 architectures (the smallest and the largest), got {n}")
    size = getattr(space, "size", None)
    if callable(size) and n > size():
        raise ConfigError(f"cannot sample {n} distinct architectures from a space of {size()}")
    rng = np.random.default_rng(seed)
    archs = {a.key(): a for a in (space.smallest(), space.largest())}
    for _ in range(1000 * n):
        if len(archs) >= n:
            break
        arch = space.sample(rng)
        archs.setdefault(arch.key(), arch)
    if len(archs) < n:
        raise ShiftnasError(f"found only {len(archs)} distinct architectures after {1000 * n} draws")
    return list(archs.values())


def sample_stratified(
    space: SearchSpace, n: int, seed: int, pool_factor: int = 20, num_classes: int = 10
) -> list[Arch]:
    """``n`` distinct architectures spread evenly over MACs: the smallest, the largest, and one
    random architecture from each of ``n - 2`` equal-count MACs bins of a uniform random pool of
    ``pool_factor * n`` architectures (so the sample covers the range a search explores).

    The bins' picks come in a seeded random order, not by MACs, so that any prefix of the sample
    (what an interrupted build has trained) still spreads over the whole MACs range."""
    pool = sample_architectures(space, max(n, pool_factor * n), seed)
    ends, rest = pool[:2], pool[2:]
    if n == 2:
        return ends
    supernet = space.build_supernet(num_classes)
    macs = np.array([count_macs(space.extract(supernet, a), space.input_size(a)) for a in rest])
    bins = np.array_split(np.argsort(macs, kind="stable"), n - 2)
    rng = np.random.default_rng(seed + 1)
    picks = [rest[int(rng.choice(b))] for b in bins if len(b)]
    return ends + [picks[i] for i in rng.permutation(len(picks))]


def best_architectures(table: GroundTruthTable, k: int) -> list[Arch]:
    """The ``k`` architectures of ``table`` with the highest mean test accuracy over their seeds."""
    rows = sorted(table.rows(), key=lambda r: (-r["mean_test_accuracy"], r["key"]))
    return [r["arch"] for r in rows[:k]]


# ----------------------------------------------------------------------------- metadata


def data_identity(data: DataSplits) -> dict[str, Any]:
    """The data set and its exact split (a hash of each split's labels; independent of image size)."""
    labels = {
        name: hashlib.sha1(getattr(data, name).tensors[1].numpy().tobytes()).hexdigest()
        for name in ("train", "val", "test")
    }
    identity = {"name": data.name, "summary": data.summary(), "labels_sha1": labels}
    if data.holdout is not None and len(data.holdout):
        identity["train_size"] = len(data.train)  # a subset of the pool: `data.train_size` rebuilds it
    return identity


def table_identity(space: SearchSpace, data: DataSplits, recipe: StandaloneRecipe) -> dict[str, Any]:
    """What determines a record's value (besides architecture and seed), JSON-normalised."""
    identity = {"space": space.describe(), "data": data_identity(data), "recipe": asdict(recipe)}
    return json.loads(json.dumps(identity))


def _check_or_write_meta(path: Path, identity: dict[str, Any], seeds: Sequence[int]) -> None:
    """Refuse a table made with a different identity; record the (union of) seeds."""
    mpath = meta_path(path)
    seeds = [int(s) for s in seeds]
    if mpath.exists():
        meta = json.loads(mpath.read_text(encoding="utf-8"))
        diff = [k for k in identity if meta.get(k) != identity[k]]
        if diff:
            raise ShiftnasError(
                f"ground-truth table {path} was made with a different {', '.join(diff)} "
                f"(see {mpath.name}); use another path"
            )
        seeds = sorted(set(meta.get("seeds", [])) | set(seeds))
        if seeds == meta.get("seeds"):
            return
    elif path.exists() and path.stat().st_size > 0:
        raise ShiftnasError(f"ground-truth table {path} has no metadata file {mpath.name}; refusing to append")
    atomic_write_json(mpath, {"format": FORMAT, **identity, "seeds": seeds})


def data_overrides(meta: dict[str, Any]) -> list[str]:
    """``--set`` overrides that load the data split a table was made with (name, train subset)."""
    data = meta.get("data") or {}
    out = [f"data.dataset={data['name']}"] if data.get("name") else []
    if data.get("train_size"):
        out.append(f"data.train_size={data['train_size']}")
    return out


# ----------------------------------------------------------------------------- building


def build_groundtruth(
    space: SearchSpace,
    data: DataSplits,
    archs: Iterable[Arch],
    recipe: StandaloneRecipe,
    seeds: Sequence[int],
    path: str | Path,
    progress: GroundTruthProgress | None = None,
    workers: int = 1,
    pool: DaskPool | None = None,
) -> GroundTruthTable:
    """Train every (arch, seed) missing from the table at ``path`` and append it; returns the table.

    Work order is seed-major (all architectures with the first seed, then the next seed), so an
    interrupted build still leaves a complete one-seed table as early as possible. ``progress``
    is called after each newly appended record with (records done, records total, record).
    ``workers > 1`` trains that many architectures at once in separate processes (one torch
    thread each; results are identical to a one-thread sequential build, appended as they finish).
    With a ``pool`` (Dask workers with the ``train`` resource) each (architecture, seed) is one job on
    a worker instead; only this process appends, so a worker lost mid-job loses only that job, which
    the scheduler re-runs elsewhere.
    """
    path = Path(path)
    archs = list({a.key(): a for a in archs}.values())
    for arch in archs:
        try:
            space.validate(arch)
        except ValueError as err:
            raise ShiftnasError(f"architecture {arch.key()} is not in space '{space.name}': {err}") from None
    if not seeds:
        raise ConfigError("need at least one seed")
    _check_or_write_meta(path, table_identity(space, data, recipe), seeds)
    drop_torn_line(path)
    existing = read_jsonl(path)
    done = {(r["key"], int(r["seed"])) for r in existing}
    costs = {r["key"]: (r["macs"], r["params"]) for r in existing}
    todo = [(seed, a) for seed in seeds for a in archs if (a.key(), int(seed)) not in done]
    total = len(todo) + sum(1 for seed in seeds for a in archs if (a.key(), int(seed)) in done)
    for i, (seed, arch, result) in enumerate(_train_all(space, data, recipe, todo, workers, pool)):
        key = arch.key()
        if key not in costs:
            costs[key] = _cost(space, arch, data.num_classes)
        record = {
            "key": key,
            "arch": arch.to_dict(),
            "seed": int(seed),
            **result,
            "macs": costs[key][0],
            "params": costs[key][1],
        }
        append_jsonl(path, record)
        if progress is not None:
            progress(total - len(todo) + i + 1, total, record)
    return GroundTruthTable(path)


def _train_all(
    space: SearchSpace,
    data: DataSplits,
    recipe: StandaloneRecipe,
    todo: list[tuple[int, Arch]],
    workers: int,
    pool: DaskPool | None = None,
) -> Iterator[tuple[int, Arch, dict[str, float]]]:
    """Yield (seed, arch, result) for every job: sequentially, from spawned processes or from Dask workers."""
    if pool is not None and todo:
        shared = pool.share((space.describe(), replace(data, holdout=None), recipe))
        jobs = {pool.submit(train_job, arch.to_dict(), int(seed), shared): (seed, arch) for seed, arch in todo}
        for future in pool.as_completed(list(jobs)):
            seed, arch = jobs[future]
            yield seed, arch, future.result()
        return
    if workers <= 1:  # one thread, as a worker: a table does not depend on how it was built
        for seed, arch in todo:
            with one_torch_thread():
                result = train_standalone(space, arch, data, recipe, int(seed))
            yield seed, arch, result
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")  # fork after OpenMP has started can deadlock
    data = replace(data, holdout=None)  # workers train on train and score val/test only: send no more
    others = set(multiprocessing.active_children())
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(space.describe(), data, recipe)
    ) as pool:
        futures = {pool.submit(_train_in_worker, arch.to_dict(), int(seed)): (seed, arch) for seed, arch in todo}
        try:
            for future in as_completed(futures):
                seed, arch = futures[future]
                yield seed, arch, future.result()
        except BaseException:  # Ctrl-C, SIGTERM, a failed job: stop the workers now, not after their job
            pool.shutdown(wait=False, cancel_futures=True)
            for worker in set(multiprocessing.active_children()) - others:
                worker.terminate()
            raise


_WORKER: dict[str, Any] = {}


def _init_worker(space_description: dict[str, Any], data: DataSplits, recipe: StandaloneRecipe) -> None:
    import torch

    from ...search_spaces import space_from_description

    torch.set_num_threads(1)
    _WORKER.update(space=space_from_description(space_description), data=data, recipe=recipe)


def _train_in_worker(arch: dict[str, Any], seed: int) -> dict[str, float]:
    return train_standalone(_WORKER["space"], arch_from_dict(arch), _WORKER["data"], _WORKER["recipe"], seed)


def train_job(arch: dict[str, Any], seed: int, shared: tuple[dict[str, Any], DataSplits, StandaloneRecipe]):
    """Run on a Dask ``train`` worker: one stand-alone training (one torch thread, as a local build)."""
    import torch

    from ...cluster.pool import relax_malloc_trim
    from ...search_spaces import space_from_description

    relax_malloc_trim()
    space_description, data, recipe = shared
    torch.set_num_threads(1)
    return train_standalone(space_from_description(space_description), arch_from_dict(arch), data, recipe, seed)


def _cost(space: SearchSpace, arch: Arch, num_classes: int) -> tuple[int, int]:
    """(MACs, params) of the extracted subnet of ``arch``."""
    net = fresh_subnet(space, arch, num_classes, seed=0)
    return count_macs(net, space.input_size(arch)), count_params(net)


# ----------------------------------------------------------------------------- the table


class GroundTruthTable:
    """A loaded ground-truth table (records + metadata); per-architecture aggregates over seeds."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        mpath = meta_path(self.path)
        if not mpath.exists():
            raise ShiftnasError(f"ground-truth metadata {mpath} not found (build the table first)")
        self.meta: dict[str, Any] = json.loads(mpath.read_text(encoding="utf-8"))
        self.records: list[dict] = []
        seen: set[tuple[str, int]] = set()
        for r in read_jsonl(self.path):
            ident = (r["key"], int(r["seed"]))
            if ident not in seen:  # first record wins should two builds have raced
                seen.add(ident)
                self.records.append(r)
        self._rows = self._aggregate()

    def _aggregate(self) -> dict[str, dict[str, Any]]:
        by_key: dict[str, list[dict]] = {}
        for r in self.records:
            by_key.setdefault(r["key"], []).append(r)
        rows = {}
        for key, recs in by_key.items():
            test = np.array([r["test_accuracy"] for r in recs], dtype=float)
            val = np.array([r["val_accuracy"] for r in recs], dtype=float)
            rows[key] = {
                "key": key,
                "arch": arch_from_dict(recs[0]["arch"]),
                "mean_test_accuracy": float(test.mean()),
                "std_test_accuracy": float(test.std()),  # population std (ddof=0): 0 for one seed
                "mean_val_accuracy": float(val.mean()),
                "n_seeds": len(recs),
                "seeds": sorted(int(r["seed"]) for r in recs),
                "mmacs": recs[0]["macs"] / 1e6,
                "params_m": recs[0]["params"] / 1e6,
            }
        return rows

    def __len__(self) -> int:
        return len(self._rows)

    def keys(self) -> list[str]:
        """Architecture keys in the order they first appear in the file."""
        return list(self._rows)

    def archs(self) -> list[Arch]:
        """The architectures of the table, in file order."""
        return [row["arch"] for row in self._rows.values()]

    def rows(self) -> list[dict[str, Any]]:
        """Per architecture: key, arch (Arch), mean/std test accuracy (%), mean val accuracy,
        n_seeds, seeds, mmacs, params_m."""
        return [dict(row) for row in self._rows.values()]

    def accuracy(self, key: str) -> float:
        """Mean stand-alone test accuracy (%) of the architecture ``key`` over its seeds."""
        if key not in self._rows:
            raise ShiftnasError(f"architecture {key} is not in ground-truth table {self.path}")
        return self._rows[key]["mean_test_accuracy"]

    def write_csv(self, path: str | Path) -> Path:
        """Write :meth:`rows` as CSV (columns ``CSV_COLUMNS``; ``arch`` as compact JSON), atomically."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in self._rows.values():
            cells = {**row, "arch": json.dumps(row["arch"].to_dict(), separators=(",", ":"))}
            writer.writerow([_fmt(cells[c]) for c in CSV_COLUMNS])
        return atomic_write_text(path, buf.getvalue())


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def table_ground_truth(
    table_path: str | Path, space: SearchSpace, data: DataSplits
) -> Callable[[Sequence[Arch]], list[float]]:
    """Stand-alone accuracy from the table at ``table_path``; missing architectures are trained with
    the table's recipe and seeds and appended to it (so a crash loses nothing and the table grows)."""

    def ground_truth(archs: Sequence[Arch]) -> list[float]:
        meta = GroundTruthTable(table_path).meta
        table = build_groundtruth(space, data, archs, StandaloneRecipe(**meta["recipe"]), meta["seeds"], table_path)
        return [table.accuracy(a.key()) for a in archs]

    return ground_truth
