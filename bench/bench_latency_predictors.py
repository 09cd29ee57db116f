"""Benchmark (issue 18): latency predictors across measurement regimes, sample sizes and transfer.

Every regime is its own "device": ONNX Runtime on this CPU at batch 1 and 32, 1 and 2 intra-op
threads, FP32 and INT8, on ``compact-mbv3`` and ``ofa-mbv3`` (at 96-160 px, so that a regime fits in
minutes). For each regime a latency dataset of ``--samples`` architectures (the space's stratified
sample, extremes included) is measured with the engine's protocol (fresh sessions per block, references
interleaved, drift re-measured) into ``<out>/latency_predictors/<regime>.json``, resumable, then the first
``--repeat`` architectures of its held-out part once more (the repeat-measurement ceiling).

Then, per regime: the last ``--test`` architectures are held out; predictors are fitted on random
subsets of the rest of size 10, 20, 50, 100, 300 (5 draws up to 50, 3 at 100, 1 at 300) by the
engine's own choice (``fit_latency_predictor``: cross-validated family choice), and each family
forced; Kendall tau, Spearman rho and MAPE on the held-out set, beside the zero-fit baselines (MACs,
params, active layers: tau only) and the ceiling (tau between the two measurements). Transfer: for
every ordered pair of regimes of one space, the predictor fitted on 300 samples of the source is the
prior of a fit on 10 and 20 samples of the target, compared with the target's own 300-sample predictor.

The two GPU regimes (ONNX Runtime's CUDA provider at batch 1 and 64, 120 architectures each) are measured on
the GPU machine with ``--measure-only`` (bench/device/README.md) and evaluated here with the rest once their
datasets are in ``bench/results/latency_predictors/``.

Latency measurement needs a quiet machine: run it alone (``make bench-latency-predictors``, ~4 h for all 8 regimes; the evaluation alone ~6 min).
Usage: python bench/bench_latency_predictors.py [--regimes a,b] [--samples 400] [--test 100] [--measure-only]
Writes bench/results/latency_predictors.{json,md}; the datasets under bench/results/latency_predictors/.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from shiftnas.config import LatencyConfig
from shiftnas.engine.evaluation.latency_dataset import (
    LatencyDataset,
    build_latency_dataset,
    check_same_measurement,
    measurement_protocol,
)
from shiftnas.hardware.fingerprint import fingerprint_of
from shiftnas.io import atomic_write_json, atomic_write_text
from shiftnas.predictors.latency import CANDIDATES, GBM_MIN, fit_latency_predictor, prediction_errors
from shiftnas.predictors.ranking import kendall_tau, paired_bootstrap_tau_delta
from shiftnas.search_spaces import get_space

RESULTS = Path(__file__).parent / "results"
SIZES = (10, 20, 50, 100, 300)
CONFIDENCE = 0.9  # hardware.latency_confidence checked: how often a held-out latency is under the bound
FEW_SHOT = (10, 20)


@dataclass(frozen=True)
class Regime:
    name: str
    space: str
    resolutions: tuple[int, ...] | None
    cfg: LatencyConfig
    plan: tuple[int, int, int] | None = None  # its own (samples, test, repeat), else the command line's

    def sizes(self, samples: int, test: int, repeat: int) -> tuple[int, int, int]:
        return self.plan or (samples, test, repeat)


def _regimes() -> dict[str, Regime]:
    base = LatencyConfig()
    b32 = replace(base, batch_size=32, warmup=2, runs=8, repeats=2)  # a batch-32 run is 10-30x longer
    out = {}
    for space, res, tag in (("compact-mbv3", None, "compact"), ("ofa-mbv3", (96, 128, 160), "ofa")):
        for suffix, cfg in (
            ("b1-t1-fp32", base),
            ("b32-t1-fp32", b32),
            ("b1-t2-fp32", replace(base, intra_threads=2)),
            ("b1-t1-int8", replace(base, precision="int8")),
        ):
            out[f"{tag}-{suffix}"] = Regime(f"{tag}-{suffix}", space, res, cfg)
    # ONNX Runtime's CUDA provider on the GPU machine (bench/device/README.md): one candidate session per
    # measurement (a CUDA session searches its convolution algorithms when it first runs) and a plan that fits
    # a 15-minute lease; measured there with --measure-only, evaluated here from the datasets it returns
    gpu = replace(base, provider="CUDAExecutionProvider", candidate_sessions="once")
    for suffix, cfg in (("b1-cuda-fp32", gpu), ("b64-cuda-fp32", replace(gpu, batch_size=64))):
        out[f"ofa-{suffix}"] = Regime(f"ofa-{suffix}", "ofa-mbv3", (96, 128, 160), cfg, plan=(120, 40, 20))
    return out


REGIMES = _regimes()
CPU_REGIMES = [name for name, r in REGIMES.items() if r.cfg.provider == "CPUExecutionProvider"]


def space_of(regime: Regime):
    return get_space(regime.space, **({"resolutions": list(regime.resolutions)} if regime.resolutions else {}))


def complete_datasets(
    regime: Regime, samples: int, test: int, repeat: int, out: Path
) -> tuple[LatencyDataset, LatencyDataset] | None:
    """The regime's dataset and repeat pass if both are complete under ``out``, checked to be of its space,
    device settings and protocol (the machine may be another: the GPU machine's datasets are read here)."""
    files = (out / f"{regime.name}.json", out / f"{regime.name}.repeat.json")
    if not all(f.is_file() for f in files):
        return None
    want = (space_of(regime).describe(), fingerprint_of(regime.cfg).as_dict(), measurement_protocol(regime.cfg))
    data, rep = (LatencyDataset.load(f) for f in files)
    for path, dataset in zip(files, (data, rep)):
        check_same_measurement(path, dataset, *want, same_machine=False)
    return (data, rep) if len(data.records) >= samples and len(rep.records) >= min(repeat, test) else None


def measure(regime: Regime, samples: int, test: int, repeat: int, out: Path) -> tuple[LatencyDataset, LatencyDataset]:
    """The regime's dataset and its repeat pass (both resumable; complete ones are read without measuring)."""
    done = complete_datasets(regime, samples, test, repeat, out)
    if done is not None:
        return done
    space, fp = space_of(regime), fingerprint_of(regime.cfg)
    print(f"== {regime.name}: measuring {samples} architectures", flush=True)
    data = build_latency_dataset(space, out / f"{regime.name}.json", samples, regime.cfg, fp, seed=0)
    again = data.archs()[samples - test : samples - test + repeat]
    rep = build_latency_dataset(space, out / f"{regime.name}.repeat.json", len(again), regime.cfg, fp, archs=again)
    return data, rep


def _errors(y, pred) -> dict[str, float]:
    e = prediction_errors(y, pred)
    return {k: e[k] for k in ("kendall_tau", "spearman_rho", "mape")}


def evaluate(regime: Regime, data: LatencyDataset, rep: LatencyDataset, test: int) -> tuple[dict, dict]:
    """Per sample size: the chosen predictor's and each family's held-out errors; the baselines and ceiling.
    Also returns the 300-sample predictor (the prior of the transfer runs) and the held-out split."""
    space = space_of(regime)
    archs, y = data.archs(), data.latencies()
    mmacs = np.array([r["mmacs"] for r in data.records])
    params = np.array([r["mparams"] for r in data.records])
    layers = np.array([sum(a.depths) for a in archs], dtype=float)
    n = len(archs)
    pool, held = np.arange(n - test), np.arange(n - test, n)
    yt = y[held]
    rep_y = rep.latencies()
    first = {r["key"]: v for r, v in zip(data.records, y)}
    ceiling = kendall_tau(rep_y, np.array([first[r["key"]] for r in rep.records]))
    baseline_scores = {"macs": mmacs, "params": params, "active_layers": layers}
    result = {
        "regime": regime.name,
        "space": regime.space,
        "protocol": {
            k: getattr(regime.cfg, k) for k in ("batch_size", "intra_threads", "precision", "runs", "repeats")
        },
        "n_measured": n,
        "n_test": test,
        "latency_ms": {"min": float(y.min()), "median": float(np.median(y)), "max": float(y.max())},
        "ceiling_tau": ceiling,
        "n_repeat": len(rep.records),
        "baselines": {name: kendall_tau(v[held], yt) for name, v in baseline_scores.items()},
        "sizes": {},
    }
    best_baseline = max(result["baselines"], key=result["baselines"].get)
    result["best_baseline"] = best_baseline
    rng = np.random.default_rng(0)
    prior = None
    for size in SIZES:
        if size > len(pool):
            continue
        draws = 5 if size <= 50 else 3 if size <= 100 else 1
        runs: dict[str, list[dict]] = {"chosen": []}
        kinds: list[str] = []
        chosen_preds: list[np.ndarray] = []
        for _ in range(draws):
            tr = rng.choice(pool, size, replace=False)
            ta, tm = [archs[i] for i in tr], mmacs[tr]
            chosen = fit_latency_predictor(space, ta, tm, y[tr], seed=0)
            kinds.append(chosen.kind)
            chosen_preds.append(chosen.predict([archs[i] for i in held], mmacs[held]))
            bound = chosen.upper([archs[i] for i in held], mmacs[held], CONFIDENCE)
            runs["chosen"].append(
                _errors(yt, chosen_preds[-1])
                | {
                    "within_prediction": float(np.mean(yt <= chosen_preds[-1])),
                    "within_bound": float(np.mean(yt <= bound)),
                }
            )
            for family in CANDIDATES:
                if family == "gbm" and size < GBM_MIN:
                    continue
                one = fit_latency_predictor(space, ta, tm, y[tr], candidates=[family], seed=0)
                runs.setdefault(family, []).append(_errors(yt, one.predict([archs[i] for i in held], mmacs[held])))
            if size == max(s for s in SIZES if s <= len(pool)):
                prior = chosen
        result["sizes"][str(size)] = {
            "draws": draws,
            "chosen_kinds": kinds,
            **{
                name: {k: statistics.mean(r[k] for r in rs) for k in ("kendall_tau", "spearman_rho", "mape")}
                | {"kendall_tau_min": min(r["kendall_tau"] for r in rs)}
                | (
                    {
                        "within_prediction": statistics.mean(r["within_prediction"] for r in rs),
                        "within_bound": statistics.mean(r["within_bound"] for r in rs),
                        "within_bound_min": min(r["within_bound"] for r in rs),
                    }
                    if name == "chosen"
                    else {}
                )
                for name, rs in runs.items()
            },
            # the chosen predictor's mean tau minus the best zero-fit baseline's, held-out archs resampled
            "vs_best_baseline_ci95": paired_bootstrap_tau_delta(chosen_preds, baseline_scores[best_baseline][held], yt),
        }
        s = result["sizes"][str(size)]["chosen"]
        print(f"   n={size:3d}: chosen {','.join(kinds)} tau {s['kendall_tau']:.3f} MAPE {s['mape']:.1f} %", flush=True)
    position = {r["key"]: i for i, r in enumerate(data.records)}
    same = np.array([position[r["key"]] for r in rep.records])  # the re-measured architectures (held out)
    result["on_repeat_set"] = {
        "macs": kendall_tau(mmacs[same], y[same]),
        "chosen_largest_n": None
        if prior is None
        else kendall_tau(prior.predict([archs[i] for i in same], mmacs[same]), y[same]),
    }
    return result, {"prior": prior, "held": held, "pool": pool}


def transfer(src: Regime, tgt: Regime, src_fit: dict, tgt_data: LatencyDataset, tgt_fit: dict) -> dict:
    """Target fits on 10 and 20 samples with the source's 300-sample predictor as prior."""
    space = space_of(tgt)
    archs, y = tgt_data.archs(), tgt_data.latencies()
    mmacs = np.array([r["mmacs"] for r in tgt_data.records])
    held, pool = tgt_fit["held"], tgt_fit["pool"]
    ha, hm = [archs[i] for i in held], mmacs[held]
    rng = np.random.default_rng(1)
    out = {}
    for size in FEW_SHOT:
        taus, kinds = [], []
        for _ in range(5):
            tr = rng.choice(pool, size, replace=False)
            fit = fit_latency_predictor(space, [archs[i] for i in tr], mmacs[tr], y[tr], seed=0, prior=src_fit["prior"])
            kinds.append(fit.kind)
            taus.append(kendall_tau(fit.predict(ha, hm), y[held]))
        out[str(size)] = {"kendall_tau": statistics.mean(taus), "kendall_tau_min": min(taus), "chosen_kinds": kinds}
    out["prior_alone_tau"] = kendall_tau(src_fit["prior"].predict(ha, hm), y[held])
    return out


def _own_tau(results: dict, pair: str) -> float:
    """The transfer target's own predictor's τ at its largest sample size (300 in the full run)."""
    sizes = results["regimes"][pair.split("->")[1]]["sizes"]
    return sizes[max(sizes, key=int)]["chosen"]["kendall_tau"]


def write(results: dict, out: Path) -> None:
    atomic_write_json(out / "latency_predictors.json", results)
    lines = [
        "# Latency predictors across regimes (issue 18)",
        "",
        f"ONNX Runtime (this CPU; the GPU regimes on the GPU machine); {results['samples']} architectures per CPU regime "
        "(stratified), the last "
        f"{results['test']} held out; fits on random subsets of the rest (mean over 5 draws up to 50, 3 at 100). "
        "Kendall τ on the held-out set; ceiling = τ between two measurements of the same architectures; "
        "baselines fit nothing.",
        "",
    ]
    missing = [n for n in CPU_REGIMES if n not in results["regimes"]]
    if missing:
        lines += [f"Not measured yet (run `make bench-latency-predictors` to resume): {', '.join(missing)}.", ""]
    gpu = [n for n in REGIMES if n not in CPU_REGIMES]
    measured_gpu = [n for n in gpu if n in results["regimes"]]
    lines += [
        f"GPU regimes ({', '.join(gpu)}; ONNX Runtime's CUDA provider, {REGIMES[gpu[0]].plan[0]} architectures, "
        f"{REGIMES[gpu[0]].plan[1]} held out): "
        + (f"measured: {', '.join(measured_gpu)}." if measured_gpu else "not measured yet: they need the GPU machine ")
        + ("" if measured_gpu else "(`bench/device/README.md`)."),
        "",
    ]
    lines += [
        "| regime | latency ms (median) | ceiling τ | MACs τ | params τ | layers τ | "
        + " | ".join(f"τ @{n}" for n in SIZES)
        + f" | MAPE @20 | MAPE @300 | chosen @20 | under the {CONFIDENCE:g} bound @20 (worst draw) |",
        "|---|---|---|---|---|---|" + "---|" * len(SIZES) + "---|---|---|---|",
    ]
    for r in results["regimes"].values():
        s = r["sizes"]
        cells = [f"{s[str(n)]['chosen']['kendall_tau']:.3f}" if str(n) in s else "–" for n in SIZES]
        kinds20 = ",".join(sorted(set(s["20"]["chosen_kinds"]))) if "20" in s else "–"
        m20 = f"{s['20']['chosen']['mape']:.1f} %" if "20" in s else "–"
        m300 = f"{s['300']['chosen']['mape']:.1f} %" if "300" in s else "–"
        c20 = s.get("20", {}).get("chosen", {})
        b20 = f"{c20['within_bound']:.0%} ({c20['within_bound_min']:.0%})" if "within_bound" in c20 else "–"
        b = r["baselines"]
        lines.append(
            f"| {r['regime']} | {r['latency_ms']['median']:.3f} | {r['ceiling_tau']:.3f} | {b['macs']:.3f} | "
            f"{b['params']:.3f} | {b['active_layers']:.3f} | "
            + " | ".join(cells)
            + f" | {m20} | {m300} | {kinds20} | {b20} |"
        )
    lines += [
        "",
        "Per sample size: the chosen predictor (τ mean and worst draw, ρ, MAPE; the share of held-out latencies "
        f"under its prediction and under its {CONFIDENCE:g} bound, `hardware.latency_confidence`) and each family "
        "forced (τ):",
        "",
    ]
    lines += [
        "| regime | n | chosen τ | worst τ | ρ | MAPE | under prediction | under bound (worst) | "
        + " | ".join(CANDIDATES)
        + " |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(CANDIDATES),
    ]
    for r in results["regimes"].values():
        for n, s in r["sizes"].items():
            c = s["chosen"]
            lines.append(
                f"| {r['regime']} | {n} | {c['kendall_tau']:.3f} | {c['kendall_tau_min']:.3f} | "
                f"{c['spearman_rho']:.3f} | {c['mape']:.1f} % | "
                + (
                    f"{c['within_prediction']:.0%} | {c['within_bound']:.0%} ({c['within_bound_min']:.0%}) | "
                    if "within_bound" in c
                    else "– | – | "
                )
                + " | ".join(f"{s[f]['kendall_tau']:.3f}" if f in s else "–" for f in CANDIDATES)
                + " |"
            )
    lines += ["", "Checks (issue 18):", ""]
    for r in results["regimes"].values():
        sizes = {n: s for n, s in r["sizes"].items() if int(n) >= 20}
        if not sizes:
            continue
        n_worst = min(sizes, key=lambda n: sizes[n]["chosen"]["kendall_tau"])
        worst, base = sizes[n_worst]["chosen"]["kendall_tau"], r.get("best_baseline", "macs")
        best_base = r["baselines"][base]
        lo, hi = sizes[n_worst].get("vs_best_baseline_ci95", [float("nan")] * 2)
        verdict = (
            "beats it beyond noise"
            if lo > 0
            else "is worse beyond noise than"
            if hi < 0
            else "beats on the mean, within noise,"
            if worst > best_base
            else "ties within noise with"
        )
        same = r.get("on_repeat_set") or {}
        on_same = (
            f"; on the {r['n_repeat']} re-measured architectures: ceiling {r['ceiling_tau']:.3f}, "
            f"MACs {same['macs']:.3f}, chosen at the largest n {same['chosen_largest_n']:.3f}"
            if same.get("chosen_largest_n") is not None
            else f"; ceiling {r['ceiling_tau']:.3f}"
        )
        lines.append(
            f"- {r['regime']}: from 20 samples on, the chosen predictor at its weakest size (n={n_worst}, mean τ "
            f"{worst:.3f}) {verdict} the best zero-fit baseline ({base}, τ {best_base:.3f}): margin "
            f"{worst - best_base:+.3f}, 95 % paired-bootstrap interval {lo:+.3f}..{hi:+.3f}{on_same}"
        )
    if results["transfer"]:
        lines += ["", "Transfer (prior: the source's largest-sample predictor; τ on the target's held-out set):", ""]
        lines += [
            "| source → target | target's MACs | prior alone | 10 samples | 20 samples | worst @20 | "
            "target's own, largest n | gap @20 |"
        ]
        lines += ["|---|---|---|---|---|---|---|---|"]
        gaps, above_macs = [], 0
        for pair, t in results["transfer"].items():
            src, tgt = pair.split("->")
            own, t20 = _own_tau(results, pair), t["20"]["kendall_tau"]
            macs = results["regimes"][tgt]["baselines"]["macs"]
            gaps.append(own - t20)
            above_macs += t20 > macs
            lines.append(
                f"| {src} → {tgt} | {macs:.3f} | {t['prior_alone_tau']:.3f} | {t['10']['kendall_tau']:.3f} | "
                f"{t20:.3f} | {t['20']['kendall_tau_min']:.3f} | {own:.3f} | {own - t20:+.3f} |"
            )
        lines += [
            "",
            f"Transfer with 20 samples within 0.05 τ of the target's own largest-sample predictor: "
            f"{sum(g <= 0.05 for g in gaps)} of {len(gaps)} pairs (largest gap {max(gaps):+.3f}); "
            f"above the target's MACs τ in {above_macs} of {len(gaps)}.",
        ]
    atomic_write_text(out / "latency_predictors.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--regimes",
        default=None,
        help=f"comma-separated, of: {', '.join(REGIMES)} (default: the CPU regimes and every GPU regime whose "
        "datasets are complete)",
    )
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=60)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--measure-only", action="store_true", help="measure the datasets, evaluate nothing (GPU machine)")
    args = ap.parse_args()
    data_dir = args.out / "latency_predictors"
    plans = {n: r.sizes(args.samples, args.test, args.repeat) for n, r in REGIMES.items()}
    if args.regimes is None:
        done = [n for n in REGIMES if n not in CPU_REGIMES and complete_datasets(REGIMES[n], *plans[n], data_dir)]
        names = CPU_REGIMES + done
    else:
        names = [n.strip() for n in args.regimes.split(",") if n.strip()]
    unknown = [n for n in names if n not in REGIMES]
    if unknown:
        raise SystemExit(f"error: unknown regime '{unknown[0]}'; choose from {', '.join(REGIMES)}")
    data_dir.mkdir(parents=True, exist_ok=True)
    measured = {n: measure(REGIMES[n], *plans[n], data_dir) for n in names}
    if args.measure_only:
        return
    results = {"samples": args.samples, "test": args.test, "regimes": {}, "transfer": {}}
    fits = {}
    for n in names:
        results["regimes"][n], fits[n] = evaluate(REGIMES[n], *measured[n], plans[n][1])
    for src in names:
        for tgt in names:
            if src != tgt and REGIMES[src].space == REGIMES[tgt].space and fits[src]["prior"] is not None:
                results["transfer"][f"{src}->{tgt}"] = transfer(
                    REGIMES[src], REGIMES[tgt], fits[src], measured[tgt][0], fits[tgt]
                )
    write(results, args.out)


if __name__ == "__main__":
    main()
