"""Accuracy surrogates, latency predictors and ranking metrics (filled by later issues)."""

from shiftnas.predictors.ranking import RankingError, kendall_tau, ranking_report  # noqa: F401
