"""report.html: built by a real search, opened in a real headless Chromium (Debian's), offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shiftnas.cli import app
from shiftnas.io import read_jsonl

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="Chromium is not installed (as root: apt-get install chromium chromium-driver)"
)


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> Path:
    """A real NSGA-II search of the NAS-Bench-Macro table through the CLI (a few seconds)."""
    out = tmp_path_factory.mktemp("report") / "run"
    args = ["search", "--space", "table:nas-bench-macro", "--objectives", "error,macs", "--out", str(out)]
    args += ["--generations", "4", "--pop-size", "12"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def test_a_search_writes_a_self_contained_report(table_run):
    page = (table_run / "report.html").read_text()
    assert "<script src=" not in page and "<link" not in page  # nothing to fetch: the page works offline
    picked = json.loads((table_run / "pareto.json").read_text())["picked"]["key"]
    assert picked in page and "Hypervolume per step" in page


@needs_browser
def test_the_report_loads_in_chromium_without_errors_and_shows_every_evaluation(table_run):
    evaluated = read_jsonl(table_run / "archive.jsonl")
    pareto = json.loads((table_run / "pareto.json").read_text())
    driver = _browser()
    try:
        driver.get((table_run / "report.html").resolve().as_uri())
        traces = driver.execute_script(
            "return [...document.querySelectorAll('.js-plotly-plot')]"
            ".map(g => g.data.map(t => ({name: t.name, n: t.x.length, text: t.text || []})))"
        )
        drawn = driver.execute_script(
            "return document.querySelectorAll('.js-plotly-plot')[0].querySelectorAll('path.point').length"
        )
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    finally:
        driver.quit()
    assert not errors, errors
    front_plot, hv_plot = traces
    by_name = {t["name"]: t for t in front_plot}  # the first cost axis (MMACs)
    assert by_name["evaluated"]["n"] == len(evaluated)
    assert by_name["Pareto front"]["n"] == len(pareto["front"])
    assert by_name["picked"]["n"] == 1 and pareto["picked"]["key"] in by_name["picked"]["text"][0]
    assert any(r["key"] in t for r in evaluated[:5] for t in by_name["evaluated"]["text"])  # hover text
    assert drawn >= len(evaluated) + len(pareto["front"]) + 1  # SVG points really drawn
    assert hv_plot[0]["n"] == len(json.loads((table_run / "hypervolume.json").read_text()))


@needs_browser
def test_a_page_whose_script_fails_is_caught(table_run, tmp_path):
    """The console check can fail: the same page without its inlined plotly.js logs an error."""
    page = (table_run / "report.html").read_text()
    start = page.index("<script>/**")  # plotly.js, inlined
    broken = tmp_path / "broken.html"
    broken.write_text(page[:start] + page[page.index("</script>", start) + len("</script>") :])
    driver = _browser()
    try:
        driver.get(broken.resolve().as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
    assert any("Plotly" in e["message"] for e in errors)


def test_report_command_rebuilds_the_page_and_refuses_a_non_run(table_run, tmp_path):
    (table_run / "report.html").unlink()
    result = CliRunner().invoke(app, ["report", str(table_run)])
    assert result.exit_code == 0, result.output
    assert (table_run / "report.html").stat().st_size > 100_000
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code != 0 and "no archive.jsonl" in result.output
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []


def test_measured_within_limits_counts_the_device_against_every_latency_constraint():
    """A re-measured front: the count uses the measured latency against each latency limit (whether the
    search held it for the prediction or the bound at a confidence), ignores other constraints, and says
    nothing when a member was not re-measured or no latency is bounded."""
    from shiftnas.engine.evaluation.objectives import parse_constraint, with_confidence
    from shiftnas.pipeline.run import measured_within_limits

    def front(*measured):
        return [{"metrics": {"latency_measured_ms": ms, "latency_ms": 0.1, "mmacs": 99.0}} for ms in measured]

    limits = [parse_constraint("latency<=2ms"), parse_constraint("macs<=10M")]
    assert measured_within_limits(front(1.0, 2.0, 2.5), limits) == {
        "latency_limits": ["latency<=2ms"],
        "within_limits": 2,  # 2.5 ms is over; the MACs constraint (99 > 10) does not count here
    }
    bound = with_confidence(limits, 0.9)  # the same limit on latency_bound_ms: the device is still the judge
    assert measured_within_limits(front(1.0, 2.5, 3.0), bound)["within_limits"] == 1
    tighter = [*limits, parse_constraint("latency<=1.5ms")]
    assert measured_within_limits(front(1.0, 2.0), tighter)["within_limits"] == 1
    assert measured_within_limits(front(1.0, None), limits) == {}
    assert measured_within_limits(front(1.0), [parse_constraint("macs<=10M")]) == {}


def test_latency_check_section_shows_counts_as_counts():
    from shiftnas.report.html import latency_check_section

    page = latency_check_section(
        {"checked": True, "n": 3, "mape": 5.0, "confidence": 0.9, "within_bound": 2, "within_limits": 3}
    )
    assert "<td>3</td>" in page and "<td>2</td>" in page and "<td>5.000</td>" in page and "<td>0.900</td>" in page
