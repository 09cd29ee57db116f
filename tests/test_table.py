"""Table search spaces: loading, deduplication, the oracle, real searches on a real table, front quality."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from shiftnas.cli import app
from shiftnas.config import NATConfig
from shiftnas.engine.evaluation.objectives import needed_metrics, resolve_objectives
from shiftnas.engine.evaluation.table import TableMetrics
from shiftnas.engine.search.archive import Archive
from shiftnas.engine.search.base import SearchFiles, SearchProblem, nondominated, objective_matrix
from shiftnas.engine.search.nat import NATSearch
from shiftnas.engine.search.nsga2 import NSGA2Search
from shiftnas.engine.search.quality import hv_fraction, igd_plus, true_front
from shiftnas.errors import ConfigError, ShiftnasError
from shiftnas.search_spaces import get_space
from shiftnas.search_spaces.table import NAMED_TABLES, TableArch, TableError

MACRO = NAMED_TABLES["nas-bench-macro"]


def _macro_subset(tmp_path: Path, n: int = 400) -> Path:
    """The first ``n`` keys of NAS-Bench-Macro, as a generic JSON table (real trained results)."""
    data = json.loads(MACRO.read_text())
    rows = [
        {
            "genes": [int(c) for c in key],
            "accuracy": v["test_acc"],
            "mmacs": v["flops"] / 1e6,
            "mparams": v["params"] / 1e6,
        }
        for key, v in list(data.items())[:n]
    ]
    path = tmp_path / "macro400.json"
    path.write_text(json.dumps(rows))
    return path


def test_nas_bench_macro_ships_and_dedupes_to_3969_networks():
    space = get_space("table", path="nas-bench-macro")
    assert space.n_rows == 6561 and space.size() == 3969 and space.n_var == 8 and space.seeds == 3
    assert space.columns == {"accuracy", "error", "mmacs", "mparams"}
    # keys with identical results are one network: repair sends each to the group's smallest genome
    data = json.loads(MACRO.read_text())
    groups: dict[str, list[str]] = {}
    for key, v in data.items():
        groups.setdefault(json.dumps(v, sort_keys=True), []).append(key)
    group = next(g for g in groups.values() if len(g) > 1)
    canonical = {space.decode(np.array([int(c) for c in key])).key() for key in group}
    assert canonical == {min(group)}
    row = space.row(TableArch(tuple(int(c) for c in min(group))))
    assert (
        row.accuracies == tuple(data[min(group)]["test_acc"]) and row.costs["mmacs"] == data[min(group)]["flops"] / 1e6
    )
    assert space.smallest().key() == "00000000" and space.largest().key() == "22222222"
    assert (MACRO.parent / "README.md").read_text().count("Apache License") == 1  # licence shipped beside it


def test_csv_and_json_tables_and_a_sparse_genome_is_repaired_to_the_nearest_row(tmp_path):
    path = tmp_path / "t.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["gene0", "gene1", "accuracy0", "accuracy1", "mmacs"])
        w.writerows([[0, 0, 80, 82, 1.0], [0, 3, 85, 85, 2.0], [2, 1, 90, 88, 5.0], [1, 2, 90, 88, 5.0]])
    space = get_space("table", path=str(path))
    assert space.n_rows == 4 and space.size() == 3  # (2,1) and (1,2) have identical results: one network
    assert space.decode(np.array([2, 1])).genes == (1, 2)
    assert space.decode(np.array([0.2, 2.6])).genes == (0, 3)  # rounded into the table
    assert space.decode(np.array([2, 3])).genes == (0, 3)  # not a row: nearest by L1 (ties: the first row)
    assert space.row(TableArch((0, 0))).mean_accuracy == 81.0
    assert (space.bounds[0].tolist(), space.bounds[1].tolist()) == ([0, 0], [2, 3])
    as_json = tmp_path / "t.json"
    as_json.write_text(
        json.dumps(
            [{"genes": [0, 0], "accuracy": [80, 82], "mmacs": 1.0}, {"genes": [0, 3], "accuracy": 85, "mmacs": 2.0}]
        )
    )
    assert get_space("table", path=str(as_json)).row(TableArch((0, 3))).accuracies == (85.0,)


@pytest.mark.parametrize(
    "content,name,message",
    [
        ("", "empty.csv", "is empty"),
        ("gene0,gene1\n0,1\n", "noacc.csv", "has no an 'accuracy' column"),
        ("accuracy,mmacs\n90,1\n", "nogenes.csv", "has no gene0, gene1, ... columns"),
        ("gene0,accuracy\n1.5,90\n", "float.csv", "line 2: gene '1.5' is not an integer"),
        ("gene0,accuracy\nx,90\n", "text.csv", "gene 'x' is not an integer"),
        ("gene0,accuracy\n1,high\n", "acc.csv", "accuracy 'high' is not a number"),
        ("gene0,gene1,accuracy\n", "header.csv", "has no rows"),
        (
            '[{"genes": [1], "accuracy": 90}, {"genes": [1, 2], "accuracy": 91}]',
            "len.json",
            "different numbers of genes",
        ),
        ('[{"genes": [1]}]', "keys.json", "every row needs 'genes' and 'accuracy'"),
        ('{"a": 1', "broken.json", "neither CSV nor valid JSON"),
    ],
)
def test_bad_tables_are_one_line_errors(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TableError) as err:
        get_space("table", path=str(path))
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(TableError, match="table not found"):
        get_space("table", path=str(tmp_path / "missing.csv"))


def test_the_noisy_oracle_draws_one_seed_per_query_deterministically():
    space = get_space("table", path="nas-bench-macro")
    arch = TableArch((1, 1, 1, 1, 1, 2, 2, 1))
    row = space.row(arch)
    needed = needed_metrics(resolve_objectives(["error", "macs"]), [])
    draws = [TableMetrics(space, needed, "seed", seed=3).accuracy(arch) for _ in range(1)]
    noisy = TableMetrics(space, needed, "seed", seed=3)
    values = [noisy.accuracy(arch) for _ in range(60)]
    assert set(values) == set(row.accuracies)  # every seed's value, and only those
    assert values[0] == draws[0]  # the same seed draws the same values
    assert values != [TableMetrics(space, needed, "seed", seed=4).accuracy(arch) for _ in range(60)]
    exact = TableMetrics(space, needed, "mean")
    assert exact.metrics(arch) == {"accuracy": row.mean_accuracy, "error": 100 - row.mean_accuracy, **row.costs}
    assert noisy.test_accuracy(arch) == row.mean_accuracy and noisy.evaluator.n_evaluations == 60
    with pytest.raises(ConfigError, match="has no column for latency_ms"):
        TableMetrics(space, needed_metrics(resolve_objectives(["error", "latency"]), []))


def _problem(space, objectives, noise="mean", seed=0, files=None):
    objs = resolve_objectives(objectives)
    metrics = TableMetrics(space, needed_metrics(objs, []), noise, seed)
    return SearchProblem(space, metrics, objs, [], Archive(), seed=seed, files=files)


def test_nsga2_and_nat_search_a_real_table(tmp_path):
    space = get_space("table", path=str(_macro_subset(tmp_path)))
    table_F = space.objective_matrix(["error", "mmacs"])
    problem = _problem(space, ["error", "macs"])
    result = NSGA2Search(problem, pop_size=12, generations=5).run()
    F = objective_matrix(result.front, ["error", "mmacs"])
    assert len(nondominated(F)) == len(F) >= 2  # the front is non-dominated ...
    keys = {a.key() for a in (TableArch(r.genes) for r in space.individuals)}
    assert {r["key"] for r in result.records} <= keys  # ... and made of networks of the table
    assert 0 < hv_fraction(F, true_front(table_F)) <= 1.0
    cfg = NATConfig(
        policy="natv2", archive_size=10, oversample=2, candidates=4, iterations=3, aux_pop_size=12, aux_generations=3
    )
    files = SearchFiles(tmp_path / "nat_state.json", tmp_path / "nat_weights.pt")
    nat = NATSearch(_problem(space, ["error", "macs"], files=files), cfg).run()
    assert [h["archive_size"] for h in nat.hv_history] == [10, 10, 10, 10]  # bounded archive, no adaptation
    assert all(h["supernet_version"] == 0 for h in nat.hv_history)  # a table has no weights to adapt
    again = NATSearch(_problem(space, ["error", "macs"], files=files), cfg).run()  # resumes: a replay
    assert [r["key"] for r in again.records] == [r["key"] for r in nat.records]


def test_nat_proposes_k_new_networks_every_iteration_even_when_its_surrogate_search_converges(tmp_path):
    space = get_space("table", path=str(_macro_subset(tmp_path)))
    # a tiny surrogate search seeded by the front: its final population is mostly networks already evaluated
    cfg = NATConfig(policy="nat", archive_size=10, candidates=4, iterations=8, aux_pop_size=8, aux_generations=2)
    problem = _problem(space, ["error", "macs"])
    NATSearch(problem, cfg).run()
    keys = [r["key"] for r in problem.archive]
    assert len(keys) == len(set(keys)) == 10 + 8 * 4  # no repeat, and K new ones per iteration


def test_nsga2_offspring_are_networks_the_run_has_not_evaluated(tmp_path):
    space = get_space("table", path=str(_macro_subset(tmp_path)))
    problem = _problem(space, ["error", "macs"])
    result = NSGA2Search(problem, pop_size=10, generations=15).run()
    keys = [r["key"] for r in problem.archive]
    # every generation brings 10 networks never seen before (without the history, converged generations
    # re-proposed known ones and evaluated fewer new networks per generation)
    assert len(keys) == len(set(keys)) == 10 * 15
    assert [h["evaluated"] for h in result.hv_history] == [10 * g for g in range(1, 16)]


def test_hv_fraction_and_igd_plus_on_a_front_known_by_hand():
    # every objective minimised; the true front is (0, 4), (1, 1), (4, 0); (3, 3) is dominated
    F = np.array([[0.0, 4.0], [1.0, 1.0], [4.0, 0.0], [3.0, 3.0]])
    front = true_front(F)
    assert front.tolist() == [[0.0, 4.0], [1.0, 1.0], [4.0, 0.0]]
    # normalised by ideal (0, 0) and nadir (4, 4): the points (0, 1), (.25, .25), (1, 0), reference (1.1, 1.1);
    # the dominated area sliced horizontally
    full = (1.1 - 0.0) * (1.1 - 1.0) + (1.1 - 0.25) * (1.0 - 0.25) + (1.1 - 1.0) * (0.25 - 0.0)
    only_middle = (1.1 - 0.25) * (1.1 - 0.25)
    assert hv_fraction(front, front) == pytest.approx(1.0)
    assert hv_fraction(np.array([[1.0, 1.0]]), front) == pytest.approx(only_middle / full)
    assert hv_fraction(np.array([[5.0, 5.0]]), front) == 0.0  # beyond the reference point
    assert igd_plus(front, front) == pytest.approx(0.0)
    # IGD+ of {(1, 1)}: mean over the true points of the distance to (.25, .25) counting only where it is worse
    d = [np.hypot(max(0.25 - 0.0, 0), max(0.25 - 1.0, 0)), 0.0, np.hypot(max(0.25 - 1.0, 0), max(0.25 - 0.0, 0))]
    assert igd_plus(np.array([[1.0, 1.0]]), front) == pytest.approx(np.mean(d))


def test_cli_search_on_a_table_writes_the_usual_files_and_supernet_commands_refuse_it(tmp_path):
    runner = CliRunner()
    out = tmp_path / "tab"
    args = [
        "search",
        "--space",
        "table:nas-bench-macro",
        "--objectives",
        "error,params",
        "--out",
        str(out),
        "--generations",
        "3",
        "--pop-size",
        "10",
        "--set",
        "table.noise=seed",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in (
        "config.yaml",
        "manifest.json",
        "archive.jsonl",
        "pareto.csv",
        "pareto.json",
        "pareto.png",
        "hypervolume.json",
        "hypervolume.png",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["front_size"] >= 1 and summary["queries"] >= 10
    assert json.loads((out / "manifest.json").read_text())["networks"] == 3969
    lines = (out / "archive.jsonl").read_text().count("\n")
    assert runner.invoke(app, args).exit_code == 0 and (out / "archive.jsonl").read_text().count("\n") == lines
    for command, needle in (
        (
            ["train", "--space", "table:nas-bench-macro", "--out", str(tmp_path / "t")],
            "is a table space: it has no supernet",
        ),
        (["export", str(out)], "has no supernet"),
        (["finetune", str(out)], "has no supernet"),
        (["profile", "--space", "table:nas-bench-macro", "--out", str(tmp_path / "d.json")], "is a table space"),
        (
            ["search", "--space", "table:nas-bench-macro", "--shift", "region", "--out", str(tmp_path / "s")],
            "--shift applies to supernet spaces only",
        ),
        (["search", "--space", "table:nope.csv", "--out", str(tmp_path / "n")], "table not found"),
        (["search", "--out", str(tmp_path / "c")], "search needs --checkpoint"),
    ):
        failed = runner.invoke(app, command)
        assert failed.exit_code == 2 and needle in failed.output and "Traceback" not in failed.output, failed.output
    assert not (tmp_path / "t").exists() and not (tmp_path / "s").exists()


def test_a_table_space_is_an_error_where_a_supernet_is_needed():
    space = get_space("table", path="nas-bench-macro")
    with pytest.raises(ShiftnasError, match="has no supernet"):
        space.build_supernet(10)
