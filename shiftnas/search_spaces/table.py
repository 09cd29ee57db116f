"""Tabular search spaces (``--space table:PATH``): every architecture was trained beforehand and is a row.

A table answers a search without training anything, so the true Pareto front is known and a search
setting can be tried in seconds. The searchers see it through the same :class:`SearchSpace`
interface as a supernet space (genome, repair, decode, sampling); it has no supernet, so the
commands that need one (train, export, fine-tune, profile, rank) refuse it.

Formats (one row per architecture; accuracies in percent, higher is better):

* CSV: integer gene columns ``gene0, gene1, ...`` and metric columns: ``accuracy`` (one value) or
  ``accuracy0, accuracy1, ...`` (one per training seed), and optionally ``mmacs``, ``mparams``,
  ``latency_ms``;
* JSON: a list of objects ``{"genes": [...], "accuracy": x or [x, ...], "mmacs": ..., ...}``;
* NAS-Bench-Macro's own JSON (``{"02012100": {"test_acc": [...], "params": n, "flops": n}, ...}``),
  its FLOPs taken as the MACs objective (the benchmark counts multiply-adds as FLOPs).

Rows with identical results (every per-seed accuracy and cost) are one network written several
ways (NAS-Bench-Macro: identity layers moved), so they are one individual: repair maps every genome
of the group to the group's smallest one, and pymoo's duplicate elimination sees networks. A genome
that is not in the table (a sparse table) is repaired to the nearest row (L1 distance on the genes;
ties: the first row).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .. import records
from ..errors import ShiftnasError
from ..io import file_digest
from .base import BoxGenome, SearchSpace
from .registry import SPACES

TABLES_DIR = Path(__file__).resolve().parent.parent / "tables"
NAMED_TABLES = {"nas-bench-macro": TABLES_DIR / "nas-bench-macro_cifar10.json"}
COST_COLUMNS = (records.MMACS, records.MPARAMS, records.LATENCY)


class TableError(ShiftnasError):
    """A table file is missing, malformed or empty (one-line message)."""


@dataclass(frozen=True)
class TableArch:
    """An architecture of a table: its integer genes."""

    genes: tuple[int, ...]

    def key(self) -> str:
        sep = "" if all(0 <= g < 10 for g in self.genes) else "-"
        return sep.join(str(g) for g in self.genes)

    def to_dict(self) -> dict[str, Any]:
        return {"genes": list(self.genes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableArch:
        return cls(tuple(int(g) for g in d["genes"]))


@dataclass(frozen=True)
class TableRow:
    genes: tuple[int, ...]
    accuracies: tuple[float, ...]  # one per training seed (or one)
    costs: dict[str, float]  # mmacs, mparams, latency_ms where the table has them

    @property
    def mean_accuracy(self) -> float:
        return float(np.mean(self.accuracies))


# ----------------------------------------------------------------------------- reading


def resolve_table(spec: str) -> Path:
    """A named table (``nas-bench-macro``) or a path."""
    path = NAMED_TABLES.get(spec, Path(spec).expanduser())
    if not path.is_file():
        names = ", ".join(NAMED_TABLES)
        raise TableError(f"table not found: {spec} (a CSV or JSON file, or one of: {names})")
    return path


def _genes(values: list[Any], where: str) -> tuple[int, ...]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise TableError(f"{where}: gene {v!r} is not an integer") from None
        if not f.is_integer():
            raise TableError(f"{where}: gene {v!r} is not an integer")
        out.append(int(f))
    return tuple(out)


def _number(value: Any, name: str, where: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TableError(f"{where}: {name} {value!r} is not a number") from None
    if not np.isfinite(x):
        raise TableError(f"{where}: {name} {value!r} is not finite")
    return x


def _from_macro(data: dict[str, Any], path: Path) -> list[TableRow]:
    rows = []
    for key, v in data.items():
        where = f"{path.name}, key {key}"
        if not re.fullmatch(r"\d+", key):
            raise TableError(f"{where}: NAS-Bench-Macro keys are strings of digits")
        accs = v["test_acc"] if isinstance(v["test_acc"], list) else [v["test_acc"]]
        rows.append(
            TableRow(
                tuple(int(c) for c in key),
                tuple(_number(a, "test_acc", where) for a in accs),
                {
                    records.MMACS: _number(v["flops"], "flops", where) / 1e6,
                    records.MPARAMS: _number(v["params"], "params", where) / 1e6,
                },
            )
        )
    return rows


def _from_objects(items: list[dict[str, Any]], path: Path) -> list[TableRow]:
    rows = []
    for i, item in enumerate(items):
        where = f"{path.name}, row {i + 1}"
        if not isinstance(item, dict) or "genes" not in item or records.ACCURACY not in item:
            raise TableError(f"{where}: every row needs 'genes' and '{records.ACCURACY}'")
        accs = item[records.ACCURACY] if isinstance(item[records.ACCURACY], list) else [item[records.ACCURACY]]
        costs = {c: _number(item[c], c, where) for c in COST_COLUMNS if item.get(c) is not None}
        rows.append(
            TableRow(
                _genes(list(item["genes"]), where), tuple(_number(a, records.ACCURACY, where) for a in accs), costs
            )
        )
    return rows


def _from_csv(text: str, path: Path) -> list[TableRow]:
    reader = csv.DictReader(text.splitlines())
    columns = reader.fieldnames or []
    gene_cols = sorted((c for c in columns if re.fullmatch(r"gene\d+", c)), key=lambda c: int(c[4:]))
    acc_cols = [c for c in columns if re.fullmatch(rf"{records.ACCURACY}\d*", c)]
    missing = [
        what
        for what, cols in (
            ("gene0, gene1, ... columns", gene_cols),
            (f"an '{records.ACCURACY}' column (or {records.ACCURACY}0, ...)", acc_cols),
        )
        if not cols
    ]
    if missing:
        raise TableError(f"{path.name} has no {' and no '.join(missing)}; columns: {', '.join(columns) or 'none'}")
    rows = []
    for i, r in enumerate(reader):
        where = f"{path.name}, line {i + 2}"
        costs = {c: _number(r[c], c, where) for c in COST_COLUMNS if c in r and r[c] not in ("", None)}
        rows.append(
            TableRow(
                _genes([r[c] for c in gene_cols], where),
                tuple(_number(r[c], c, where) for c in acc_cols if r[c] not in ("", None)),
                costs,
            )
        )
    return rows


def read_table(path: Path) -> list[TableRow]:
    """Every row of the table at ``path`` (checked: integer genes of one length, numbers, not empty)."""
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise TableError(f"table {path} is empty")
    if path.suffix.lower() == ".csv":
        rows = _from_csv(text, path)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise TableError(f"table {path} is neither CSV nor valid JSON: {err.msg} (line {err.lineno})") from None
        if isinstance(data, dict) and data and all(isinstance(v, dict) and "test_acc" in v for v in data.values()):
            rows = _from_macro(data, path)
        elif isinstance(data, list):
            rows = _from_objects(data, path)
        else:
            raise TableError(f"table {path}: expected a list of rows or NAS-Bench-Macro's mapping of keys")
    if not rows:
        raise TableError(f"table {path} has no rows")
    lengths = {len(r.genes) for r in rows}
    if len(lengths) > 1:
        raise TableError(f"table {path}: rows have different numbers of genes ({sorted(lengths)})")
    if any(not r.accuracies for r in rows):
        raise TableError(f"table {path}: a row has no accuracy")
    return rows


# ----------------------------------------------------------------------------- the space


class TableSpace(BoxGenome, SearchSpace):
    """The architectures of one table as a search space (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.name = "table"
        self.spec_path = path
        self.path = resolve_table(path)
        rows = read_table(self.path)
        groups: dict[tuple, list[TableRow]] = {}
        for row in rows:
            signature = (row.accuracies, tuple(sorted(row.costs.items())))
            groups.setdefault(signature, []).append(row)
        self.individuals: list[TableRow] = sorted(
            (min(g, key=lambda r: r.genes) for g in groups.values()), key=lambda r: r.genes
        )
        self._canonical = {r.genes: min(g, key=lambda x: x.genes).genes for g in groups.values() for r in g}
        self._by_genes = {r.genes: r for r in self.individuals}
        self._all = np.array(list(self._canonical), dtype=int)
        self._xl, self._xu = self._all.min(axis=0), self._all.max(axis=0)
        self.n_rows = len(rows)

    # -- the table ----------------------------------------------------------------------------
    @cached_property
    def seeds(self) -> int:
        """Accuracies per row (the most any row has)."""
        return max(len(r.accuracies) for r in self.individuals)

    @cached_property
    def columns(self) -> set[str]:
        """The metric columns every row has."""
        common = set.intersection(*(set(r.costs) for r in self.individuals))
        return common | {records.ACCURACY, records.ERROR}

    @cached_property
    def fingerprint(self) -> str:
        return file_digest(self.path)

    def objective_matrix(self, columns: list[str]) -> np.ndarray:
        """Every network's objective values (mean accuracy as error), in ``self.individuals`` order."""

        def value(row: TableRow, column: str) -> float:
            if column == records.ERROR:
                return 100.0 - row.mean_accuracy
            if column == records.ACCURACY:
                return row.mean_accuracy
            return row.costs[column]

        return np.array([[value(r, c) for c in columns] for r in self.individuals], dtype=float)

    def row(self, arch: TableArch) -> TableRow:
        self.validate(arch)
        return self._by_genes[arch.genes]

    # -- genome -------------------------------------------------------------------------------
    def repair(self, genome: np.ndarray) -> np.ndarray:
        g = tuple(int(v) for v in self.clip(genome))
        if g not in self._canonical:  # a sparse table: the nearest row
            g = tuple(int(v) for v in self._all[int(np.abs(self._all - np.array(g)).sum(axis=1).argmin())])
        return np.array(self._canonical[g], dtype=int)

    def decode(self, genome: np.ndarray) -> TableArch:
        return TableArch(tuple(int(v) for v in self.repair(genome)))

    def encode(self, arch: TableArch) -> np.ndarray:
        self.validate(arch)
        return np.array(arch.genes, dtype=int)

    def sample(self, rng: np.random.Generator) -> TableArch:
        """A network of the table, uniformly (each distinct network once, whatever its number of keys)."""
        return TableArch(self.individuals[int(rng.integers(len(self.individuals)))].genes)

    @cached_property
    def _by_cost(self) -> list[TableRow]:
        column = next((c for c in (records.MMACS, records.MPARAMS) if c in self.columns), None)
        return sorted(self.individuals, key=lambda r: (r.costs[column] if column else sum(r.genes), r.genes))

    def smallest(self) -> TableArch:
        return TableArch(self._by_cost[0].genes)

    def largest(self) -> TableArch:
        return TableArch(self._by_cost[-1].genes)

    def validate(self, arch: TableArch) -> None:
        if not isinstance(arch, TableArch) or arch.genes not in self._by_genes:
            raise ValueError(f"{getattr(arch, 'genes', arch)} is not a network of table {self.path.name}")

    def size(self) -> int:
        """Number of distinct networks."""
        return len(self.individuals)

    # -- no supernet --------------------------------------------------------------------------
    def _no_supernet(self, *args: Any, **kwargs: Any) -> Any:
        raise ShiftnasError(
            f"the table space ({self.path.name}) has no supernet: training, export, fine-tuning, "
            "profiling and ranking need a supernet space such as compact-mbv3"
        )

    build_supernet = activate = extract = input_size = _no_supernet

    def describe(self) -> dict[str, Any]:
        return {"name": "table", "path": self.spec_path}


@SPACES.register("table")
def table_space(path: str | None = None) -> TableSpace:
    """``table:PATH``: a CSV or JSON table of trained architectures (or ``table:nas-bench-macro``)."""
    if not path:
        raise TableError(f"the table space needs a table: use 'table:PATH' or 'table:{next(iter(NAMED_TABLES))}'")
    return TableSpace(path)


def is_table(space_name: str) -> bool:
    """Whether ``space.name`` (``table:PATH``) names a table space."""
    return space_name.partition(":")[0] == "table"
