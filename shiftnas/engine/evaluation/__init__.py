"""Scoring an architecture: accuracy through the supernet (BN-recalibrated), MACs, params, latency."""
