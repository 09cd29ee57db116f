"""Accuracy surrogates, latency predictors and ranking metrics (filled by later issues)."""
