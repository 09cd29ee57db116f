"""The records of evaluated architectures: every field name in one place.

An archive record (one line of ``archive.jsonl``, one entry of ``pareto.json``) is an
:class:`ArchRecord`; its ``metrics`` hold the columns below, each in the unit it is reported in.
Code that reads or writes a record names its fields through these constants.
"""

from __future__ import annotations

from typing import Any, TypedDict

# metrics (keys of ArchRecord["metrics"])
ERROR = "error"  # 100 - validation accuracy, %
ACCURACY = "accuracy"  # validation accuracy through the supernet, %
TEST_ACCURACY = "test_accuracy"  # test accuracy of the final front, %
LATENCY = "latency_ms"  # median latency, ms (measured or predicted)
LATENCY_P10 = "latency_p10_ms"
LATENCY_SPREAD = "latency_spread"
LATENCY_RATIO = "latency_ratio"  # paired ratio to the nearest reference subnet
LATENCY_REFERENCE = "latency_reference"
LATENCY_MEASURED = "latency_measured_ms"  # a predicted front re-measured at the end, on the dataset's scale
LATENCY_UNCERTAINTY = "latency_uncertainty_ms"  # predicted latency x the predictor's cross-validated MAPE
# predicted latency at hardware.latency_confidence: the latency constraints bound this one
LATENCY_BOUND = "latency_bound_ms"
MMACS = "mmacs"  # multiply-accumulates of Conv and Gemm layers, millions
MPARAMS = "mparams"  # parameters, millions


class ArchRecord(TypedDict):
    """One evaluated architecture."""

    key: str  # Arch.key()
    arch: dict[str, Any]  # Arch.to_dict()
    genome: list[int]
    metrics: dict[str, Any]
    supernet_version: int  # bumped by every update of the weights during the search
    supernet_id: str  # hash of the weights the search started from (+ the stratified validation subset's settings)
    generation: int  # generation (NSGA-II) or iteration (NAT) that scored it
    time: float
