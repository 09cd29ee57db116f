"""--track: real searches logged to a real MLflow SQLite store and to real TensorBoard event files."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shiftnas.cli import app

runner = CliRunner()


def _table_search(out, track: str, generations: int = 3):
    args = ["search", "--space", "table:nas-bench-macro", "--objectives", "error,macs", "--out", str(out)]
    args += ["--generations", str(generations), "--pop-size", "10", "--track", track]
    return runner.invoke(app, args)


def test_mlflow_gets_config_metrics_per_generation_and_artifacts_and_a_resume_continues_the_run(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)  # a SQLite store keeps its artifacts in ./mlruns (MLflow's default)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    result = _table_search(out, f"mlflow:{uri}")
    assert result.exit_code == 0, result.output

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("shiftnas")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["search.pop_size"] == "10" and run.data.params["space.name"] == "table:nas-bench-macro"
    history = json.loads((out / "hypervolume.json").read_text())
    logged = client.get_metric_history(run.info.run_id, "search/hypervolume")
    assert [(m.step, m.value) for m in logged] == [(h["generation"], h["hypervolume"]) for h in history]
    fronts = client.get_metric_history(run.info.run_id, "search/front_size")
    assert len(fronts) == len(history) and all(m.value >= 1 for m in fronts)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"pareto.csv", "pareto.json", "report.html", "summary.json"} <= artifacts
    assert list((tmp_path / "mlruns").rglob("report.html"))

    # more generations on the same run directory: it resumes, and so does its MLflow run
    result = _table_search(out, f"mlflow:{uri}", generations=5)
    assert result.exit_code == 0, result.output
    (again,) = client.search_runs([experiment.experiment_id])
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "search/hypervolume")}
    assert steps == set(range(1, 6))


def test_tensorboard_scalars_per_generation(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = _table_search(out, f"tensorboard:{tmp_path / 'tb'}")
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    history = json.loads((out / "hypervolume.json").read_text())
    logged = events.Scalars("search/hypervolume")
    assert [e.step for e in logged] == [h["generation"] for h in history]
    assert [round(e.value, 5) for e in logged] == [round(h["hypervolume"], 5) for h in history]


def test_an_unknown_tracker_is_one_line_and_touches_nothing(tmp_path):
    result = _table_search(tmp_path / "run", "wandb")
    assert result.exit_code != 0 and "track must be mlflow[:URI] or tensorboard[:DIR]" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
