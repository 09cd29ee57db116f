"""Ranking metrics (methods.md §1, items 1-8) against scipy and hand-counted values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from shiftnas.errors import ShiftnasError
from shiftnas.predictors.ranking import (
    RankingError,
    kendall_tau,
    local_kendall_tau,
    paired_bootstrap_tau_delta,
    pearson_r,
    precision_at_k,
    ranking_report,
    rmse,
    sparse_bins,
    sparse_kendall_tau,
    spearman_rho,
    subsample_tau,
    top_k_percentile,
)

UP = np.arange(1.0, 6.0)


# ----------------------------------------------------------------------------- global metrics


def test_perfect_and_reversed_order():
    assert kendall_tau(UP, UP * 10) == pytest.approx(1.0)
    assert spearman_rho(UP, UP * 10) == pytest.approx(1.0)
    assert kendall_tau(UP, -UP) == pytest.approx(-1.0)
    assert spearman_rho(UP, -UP) == pytest.approx(-1.0)


def test_known_permutation_hand_counted():
    truth = np.array([2.0, 1.0, 4.0, 3.0, 5.0])
    # 10 pairs; discordant: (0,1) and (2,3) -> C = 8, D = 2, tau = 6/10.
    assert kendall_tau(UP, truth) == pytest.approx(0.6)
    # rank differences d = (-1, 1, -1, 1, 0), sum d^2 = 4: rho = 1 - 6*4 / (5*24) = 0.8.
    assert spearman_rho(UP, truth) == pytest.approx(0.8)


def test_tau_b_with_ties_hand_counted():
    scores, truth = [1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]
    # C = 5, D = 0, one pair tied only in scores, none only in truth:
    # tau_b = 5 / sqrt((5 + 1) * (5 + 0)).
    expected = 5 / math.sqrt(30)
    assert kendall_tau(scores, truth) == pytest.approx(expected)
    assert kendall_tau(scores, truth) == pytest.approx(stats.kendalltau(scores, truth).statistic)


def test_against_scipy_on_random_data():
    rng = np.random.default_rng(1)
    s, g = rng.normal(size=40), rng.normal(size=40)
    s[:5] = s[5]  # some ties
    assert kendall_tau(s, g) == pytest.approx(stats.kendalltau(s, g).statistic)
    assert spearman_rho(s, g) == pytest.approx(stats.spearmanr(s, g).statistic)
    assert pearson_r(s, g) == pytest.approx(stats.pearsonr(s, g).statistic)
    assert rmse(s, g) == pytest.approx(np.sqrt(np.mean((s - g) ** 2)))


def test_rmse_and_pearson_by_hand():
    assert rmse([1.0, 2.0, 3.0], [1.0, 2.0, 5.0]) == pytest.approx(math.sqrt(4 / 3))
    assert pearson_r([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(1.0)


def test_constant_side_gives_nan_without_warning(recwarn):
    assert math.isnan(kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(spearman_rho([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(pearson_r([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert len(recwarn) == 0


# ----------------------------------------------------------------------------- local τ


def _top_reversed():
    truth = np.arange(1.0, 11.0)  # arch 9 is best
    scores = np.array([1, 2, 3, 4, 5, 6, 7, 8, 10, 9], dtype=float)  # top-2 swapped
    return scores, truth


def test_local_tau_sees_reversed_top_while_global_is_high():
    scores, truth = _top_reversed()
    assert kendall_tau(scores, truth) == pytest.approx(43 / 45)  # one discordant pair of 45
    assert local_kendall_tau(scores, truth, 0.2) == pytest.approx(-1.0)
    # top 30%: truth 8, 9, 10 with scores 8, 10, 9 -> C = 2, D = 1 -> 1/3
    assert local_kendall_tau(scores, truth, 0.3) == pytest.approx(1 / 3)
    assert local_kendall_tau(scores, truth, 1.0) == pytest.approx(kendall_tau(scores, truth))


def test_local_tau_selects_by_truth_not_input_order():
    scores, truth = _top_reversed()
    perm = np.random.default_rng(0).permutation(10)
    assert local_kendall_tau(scores[perm], truth[perm], 0.2) == pytest.approx(-1.0)
    # the subset is chosen by truth: reversing the bottom does not change local tau
    scores2 = scores.copy()
    scores2[:8] = scores2[:8][::-1]
    assert kendall_tau(scores2, truth) < 0
    assert local_kendall_tau(scores2, truth, 0.2) == pytest.approx(-1.0)


def test_local_tau_needs_two_items():
    scores, truth = _top_reversed()
    with pytest.raises(ValueError, match="at least 2 architectures in the top"):
        local_kendall_tau(scores, truth, 0.1)  # 1 of 10
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="top_fraction"):
            local_kendall_tau(scores, truth, bad)


# ----------------------------------------------------------------------------- sparse τ

SPARSE_TRUTH = np.array([0.911, 0.9112, 0.912, 0.95])
SPARSE_SCORES = np.array([2.0, 1.0, 3.0, 4.0])  # only the pair (0, 1) is discordant


def test_sparse_bins_floor_like_landmark_code():
    # floor(g / threshold), as the landmark code computes it (its docstring example is off by a
    # decade: it shows [1,1,2] for 1e-2, but its code gives that grouping only at 1e-3)
    assert sparse_bins([0.911, 0.9112, 0.912], 1e-3).tolist() == [911, 911, 912]
    assert sparse_bins([0.911, 0.9112, 0.912], 1e-4).tolist() == [9110, 9112, 9120]
    assert sparse_bins([0.29, 0.3], 0.01).tolist() == [29, 30]  # no float-noise drop to 28


def test_sparse_tau_ties_near_equal_truth_as_threshold_grows():
    t = [sparse_kendall_tau(SPARSE_SCORES, SPARSE_TRUTH, th) for th in (1e-4, 1e-3, 1e-2)]
    assert t[0] == pytest.approx(4 / 6)  # all bins distinct: C=5, D=1
    assert t[0] == pytest.approx(kendall_tau(SPARSE_SCORES, SPARSE_TRUTH))
    assert t[1] == pytest.approx(5 / math.sqrt(6 * 5))  # (0,1) tied in truth
    assert t[2] == pytest.approx(3 / math.sqrt(6 * 3))  # 0, 1, 2 all tied in truth
    assert len(set(np.round(t, 9))) == 3
    assert math.isnan(sparse_kendall_tau(SPARSE_SCORES, SPARSE_TRUTH, 1.0))  # one bin


def test_sparse_tau_default_and_percent_input():
    assert sparse_kendall_tau(SPARSE_SCORES, SPARSE_TRUTH) == pytest.approx(5 / math.sqrt(30))
    assert sparse_kendall_tau(SPARSE_SCORES, SPARSE_TRUTH * 100) == pytest.approx(
        sparse_kendall_tau(SPARSE_SCORES, SPARSE_TRUTH)
    )
    with pytest.raises(ValueError, match="threshold"):
        sparse_kendall_tau(SPARSE_SCORES, SPARSE_TRUTH, 0.0)


# ----------------------------------------------------------------- precision@k, percentile

PK_SCORES = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])  # score order: 0, 1, 2, 3, 4, 5
PK_TRUTH = np.array([6.0, 1.0, 5.0, 2.0, 4.0, 3.0])  # truth order: 0, 2, 4, 5, 3, 1


def test_precision_at_k_by_hand():
    assert precision_at_k(PK_SCORES, PK_TRUTH, 1) == 1.0  # {0} vs {0}
    assert precision_at_k(PK_SCORES, PK_TRUTH, 2) == 0.5  # {0,1} vs {0,2}
    assert precision_at_k(PK_SCORES, PK_TRUTH, 3) == pytest.approx(2 / 3)  # {0,1,2} vs {0,2,4}
    assert precision_at_k(PK_SCORES, PK_TRUTH, 6) == 1.0
    assert precision_at_k(PK_SCORES, -PK_SCORES, 3) == 0.0


def test_top_k_percentile_by_hand():
    # GT ranks (1 = best): [1, 6, 2, 5, 3, 4]; top-3 by score are archs 0, 1, 2 -> 1, 6, 2
    assert top_k_percentile(PK_SCORES, PK_TRUTH, 3) == pytest.approx({"min": 1 / 6, "median": 2 / 6, "max": 6 / 6})
    perfect = top_k_percentile(PK_TRUTH, PK_TRUTH, 3)
    assert perfect == pytest.approx({"min": 1 / 6, "median": 2 / 6, "max": 3 / 6})


def test_top_k_percentile_ties_share_best_rank():
    # truth ties: archs 0 and 1 both rank 1, arch 2 rank 3
    assert top_k_percentile([0.0, 1.0, 2.0], [3.0, 3.0, 1.0], 1) == pytest.approx(
        {"min": 1.0, "median": 1.0, "max": 1.0}
    )
    assert top_k_percentile([0.0, 1.0, 2.0], [3.0, 3.0, 1.0], 3) == pytest.approx(
        {"min": 1 / 3, "median": 1 / 3, "max": 1.0}
    )


@pytest.mark.parametrize("k", [0, 7, -1, 2.5, True])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        precision_at_k(PK_SCORES, PK_TRUTH, k)
    with pytest.raises(ValueError, match="k must be"):
        top_k_percentile(PK_SCORES, PK_TRUTH, k)


# ----------------------------------------------------------------------------- subsample τ


def test_subsample_tau():
    x = np.arange(30.0)
    assert subsample_tau(x, x, 10) == pytest.approx({"mean": 1.0, "min": 1.0, "max": 1.0})
    rng = np.random.default_rng(3)
    s, g = rng.normal(size=30), rng.normal(size=30)
    a = subsample_tau(s, g, 10, repeats=5, seed=7)
    assert a == subsample_tau(s, g, 10, repeats=5, seed=7)
    assert -1 <= a["min"] <= a["mean"] <= a["max"] <= 1
    assert a["min"] < a["max"]
    full = subsample_tau(s, g, 30, repeats=2)
    assert full["mean"] == pytest.approx(kendall_tau(s, g))
    with pytest.raises(ValueError, match="exceeds"):
        subsample_tau(s, g, 31)
    with pytest.raises(ValueError, match="subsample size"):
        subsample_tau(s, g, 1)
    with pytest.raises(ValueError, match="repeats"):
        subsample_tau(s, g, 10, repeats=0)


# ----------------------------------------------------------------------------- paired bootstrap


def test_paired_bootstrap_tau_delta_separates_better_from_equal():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=200)
    noisy = truth + rng.normal(scale=1.0, size=200)
    better = [truth + rng.normal(scale=0.2, size=200) for _ in range(3)]
    lo, hi = paired_bootstrap_tau_delta(better, noisy, truth, n=300)
    assert 0 < lo < hi  # clearly better: the whole interval above zero
    point = np.mean([kendall_tau(b, truth) for b in better]) - kendall_tau(noisy, truth)
    assert lo < point < hi
    lo, hi = paired_bootstrap_tau_delta([noisy], noisy, truth, n=300)
    assert lo == hi == 0.0  # the same scores: no difference in any resample
    lo, hi = paired_bootstrap_tau_delta([truth + rng.normal(scale=1.0, size=200)], noisy, truth, n=300)
    assert lo < 0 < hi  # as noisy as the reference: the interval spans zero
    assert paired_bootstrap_tau_delta(better, noisy, truth, n=50, seed=4) == paired_bootstrap_tau_delta(
        better, noisy, truth, n=50, seed=4
    )
    with pytest.raises(RankingError, match="differ in length"):
        paired_bootstrap_tau_delta([truth[:-1]], noisy, truth)
    with pytest.raises(RankingError, match="at least one draw"):
        paired_bootstrap_tau_delta([], noisy, truth)


# ----------------------------------------------------------------------------- report


def test_report_keys_small_sample():
    scores, truth = _top_reversed()
    rep = ranking_report(scores, truth)
    stats_keys = [f"top{k}_percentile_{s}" for k in (5, 10) for s in ("min", "median", "max")]
    expected = {
        "n",
        "kendall_tau",
        "spearman_rho",
        "pearson_r",
        "rmse",
        "sparse_tau",
        "local_tau@20%",
        "precision@5",
        "precision@10",
        *stats_keys,
        "subsample_tau@10_mean",
        "subsample_tau@10_min",
        "subsample_tau@10_max",
    }
    assert set(rep) == expected  # local_tau@10% (1 item) and sizes > 10 skipped
    assert all(isinstance(v, float) for v in rep.values())
    assert rep["n"] == 10.0
    assert rep["local_tau@20%"] == pytest.approx(-1.0)
    assert rep["kendall_tau"] == pytest.approx(43 / 45)
    assert rep["precision@5"] == pytest.approx(precision_at_k(scores, truth, 5))
    assert rep["top5_percentile_median"] == pytest.approx(top_k_percentile(scores, truth, 5)["median"])


def test_report_keys_larger_sample_and_options():
    rng = np.random.default_rng(0)
    g = rng.uniform(0.6, 0.9, size=60)
    s = g + rng.normal(scale=0.02, size=60)
    rep = ranking_report(s, g)
    assert {"local_tau@10%", "local_tau@20%", "subsample_tau@50_mean"} <= set(rep)
    assert "subsample_tau@100_mean" not in rep
    rep2 = ranking_report(s, g, ks=(3,), top_fractions=(0.25,), subsample_sizes=())
    assert "precision@3" in rep2 and "local_tau@25%" in rep2 and "precision@5" not in rep2
    assert not any(k.startswith("subsample") for k in rep2)
    assert ranking_report(s[:3], g[:3], ks=(5,))["n"] == 3.0  # tiny input still reports


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "scores,truth,needle",
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], "differ in length"),
        ([1.0], [1.0], "at least 2"),
        ([1.0, float("nan")], [1.0, 2.0], "scores contain NaN"),
        ([1.0, 2.0], [1.0, float("inf")], "truth contains NaN"),
        ([[1.0, 2.0]], [[1.0, 2.0]], "1-D"),
        (["a", "b"], [1.0, 2.0], "numeric"),
    ],
)
def test_input_validation(scores, truth, needle):
    for fn in (kendall_tau, spearman_rho, pearson_r, rmse, sparse_kendall_tau, ranking_report):
        with pytest.raises(ValueError, match=needle) as info:
            fn(scores, truth)
        assert isinstance(info.value, (RankingError, ShiftnasError))
        assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- properties

TRANSFORMS = [
    lambda x: 3.0 * x + 7.0,
    lambda x: x**3,
    lambda x: np.exp(x / 10.0),
    np.arctan,
]


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(-50, 50), st.integers(-50, 50)), min_size=2, max_size=30),
    transform=st.sampled_from(TRANSFORMS),
)
def test_tau_rho_invariant_to_increasing_transform(data, transform):
    s = np.array([d[0] for d in data], dtype=float)
    g = np.array([d[1] for d in data], dtype=float)
    ts = transform(s)
    assert np.all(np.diff(ts[np.argsort(s)]) >= 0) and len(set(ts)) == len(set(s))
    constant = len(set(s)) == 1 or len(set(g)) == 1
    for fn in (kendall_tau, spearman_rho):
        a, b = fn(s, g), fn(ts, g)
        if constant:
            assert math.isnan(a) and math.isnan(b)
        else:
            assert -1.0 - 1e-12 <= a <= 1.0 + 1e-12
            assert a == pytest.approx(b, abs=1e-9)
