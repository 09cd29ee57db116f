"""Benchmark: NAT vs NATv2, each NATv2 change switched off in turn, the surrogates, and fine-tuning.

For each seed a compact supernet is trained on the data (default: mnist5k, 3500 / 500 / 1000
images); then, from copies of it, the NAT / NATv2 loop runs with error + MMACs as objectives:
  nat                    genome-uniform init, no pre-processing, growing archive, RBF ensemble
  natv2                  architecture-space init, pre-processing x10, bounded archive, LightGBM
  natv2 - init           ... with genome-uniform init
  natv2 - preprocess     ... without pre-processing
  natv2 - bounded        ... with a growing archive
  natv2 - predictor      ... with the RBF ensemble
  natv2 + shift          NATv2 with Supernet Shifting (per_iteration) beside the adaptation
Why mnist5k, 8 epochs: on digits (the first version of this benchmark) a supernet trained 4 epochs
was so undertrained that random subnets scored 15-22 % error against 11 % for the smallest network
(the front was that one network and the hypervolume only tracked the adaptation's training), and
one trained 12 epochs saturated the 180 validation images (the smallest network at 0 % error on
seed 1, every surrogate's tau near 0): bench/results/nat_digits.md. On mnist5k, after 8 epochs,
subnets span about 1.8-4.2 % error on 500 validation images.
Hypervolume per iteration is recomputed for every run of a seed against one common reference point
(1.01 x the worst error / MMACs any of the seed's runs saw), so the variants are comparable.
Surrogates: every family's 10-fold cross-validated tau / rho / RMSE on each seed's final NATv2
archive, and the online tau of each run's surrogate on its new candidates. Fine-tuning: test
accuracy before / after two-phase fine-tuning of the NATv2 front's knee and max-accuracy subnets.

Usage: python bench/bench_nat.py --seeds 0,1,2 [--data digits --epochs 12]   (one process per seed set)
Writes bench/results/nat_<data>_seed<S>.json, then nat_<data>.json and nat_<data>.md from every
seed file of that data set. Checkpoints and NAT states live in runs/bench_nat/<data>/: an
interrupted benchmark resumes where it stopped (a variant resumed mid-run is timed from the resume).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from shiftnas.config import EvalConfig, FinetuneRecipe, NATConfig, ShiftConfig, TrainConfig
from shiftnas.data import load_dataset
from shiftnas.engine.evaluation.inference import inference_form
from shiftnas.engine.evaluation.metrics import ArchitectureMetrics
from shiftnas.engine.evaluation.objectives import needed_metrics, resolve_objectives
from shiftnas.engine.evaluation.subnet import SubnetEvaluator, accuracy
from shiftnas.engine.search.archive import Archive
from shiftnas.engine.search.base import SearchFiles, SearchProblem, nondominated, normalized_hypervolume
from shiftnas.engine.search.nat import NATSearch
from shiftnas.engine.search.shifting import NoShift, make_shift_strategy
from shiftnas.engine.training.finetune import finetune
from shiftnas.engine.training.supernet import train_supernet
from shiftnas.predictors.ranking import kendall_tau, spearman_rho
from shiftnas.predictors.surrogate import fit_quality, make_surrogate
from shiftnas.report import pick
from shiftnas.search_spaces import arch_from_dict, get_space

RESULTS = Path(__file__).parent / "results"
WORK = Path("runs/bench_nat")  # checkpoints and per-variant NAT states: an interrupted benchmark resumes
DATASETS = {
    # 10,000 training images as the ground-truth table; 2,000 val images (a fifth of the table's 6,000) keep
    # the ~2,500 evaluations of a seed's seven runs near an hour on one core
    "fashion-mnist": {
        "load": {"train_size": 10_000, "val_fraction": 2_000 / 60_000},
        "resolutions": [20, 24, 28],
        "calib_size": 500,
    },
    "mnist5k": {"load": {}, "resolutions": [20, 24, 28], "calib_size": 256},
    "digits": {"load": {"image_size": 24}, "resolutions": [16, 20, 24], "calib_size": 500},
}
SCALE = dict(
    archive_size=20,
    oversample=10,
    candidates=5,
    iterations=6,
    top_n=10,
    aux_pop_size=30,
    aux_generations=10,
    adapt_steps=10,
)
FINETUNE = dict(epochs=10, patience=3)
SMOKE = dict(
    archive_size=6, oversample=2, candidates=2, iterations=2, top_n=4, aux_pop_size=8, aux_generations=2, adapt_steps=2
)
VARIANTS = {
    "nat": dict(policy="nat"),
    "natv2": dict(policy="natv2"),
    "natv2 - init": dict(policy="natv2", init="genome-uniform"),
    "natv2 - preprocess": dict(policy="natv2", preprocess=False),
    "natv2 - bounded": dict(policy="natv2", update="grow"),
    "natv2 - predictor": dict(policy="natv2", surrogate="rbf"),
    "natv2 + shift": dict(policy="natv2"),
}
SHIFTED = {"natv2 + shift": ShiftConfig(strategy="per_iteration", keep_checkpoints=False)}


def timed(marker: Path, work):
    """``(work(), seconds it took)``, the seconds remembered in ``marker``: work an earlier process finished
    resumes from its own checkpoint in no time, and keeps the first run's time."""
    t0 = time.time()
    value = work()
    if not marker.is_file():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{time.time() - t0:.1f}")
    return value, float(marker.read_text())


def cv_quality(name: str, X: np.ndarray, y: np.ndarray, seed: int) -> dict[str, float]:
    from sklearn.model_selection import KFold

    pred = np.empty_like(y)
    for train, test in KFold(min(10, len(X)), shuffle=True, random_state=seed).split(X):
        pred[test] = make_surrogate(name, seed).fit(X[train], y[train]).predict(X[test])
    return fit_quality(pred, y)


def random_search(space, evaluator, objectives, n: int, seed: int) -> tuple[list[list[float]], float]:
    """The non-dominated (error, MMACs) of ``n`` distinct uniformly sampled architectures, and its seconds."""
    t0 = time.time()
    metrics = ArchitectureMetrics(evaluator, None, needed_metrics(objectives, []))
    rng, archs = np.random.default_rng(seed), {}
    while len(archs) < n:
        arch = space.sample(rng)
        archs.setdefault(arch.key(), arch)
    F = np.array([[m["error"], m["mmacs"]] for m in (metrics.metrics(a) for a in archs.values())])
    return F[nondominated(F)].tolist(), time.time() - t0


def split_half_tau(evaluator, archs, seed: int) -> dict[str, float]:
    """How reliable the surrogates' target is: Kendall tau between the supernet's accuracies of ``archs`` on
    two disjoint random halves of the val split (a surrogate predicts the whole split's, which is less noisy)."""
    images, labels = evaluator.data.val.tensors
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    halves = order[: len(order) // 2], order[len(order) // 2 :]
    scores = [[], []]
    for arch in archs:
        fast = inference_form(evaluator.subnet(arch))
        for half, idx in zip(scores, halves):
            half.append(accuracy(fast, images[idx], labels[idx], arch.resolution, nhwc=True))
    return {"kendall_tau": kendall_tau(scores[0], scores[1]), "spearman_rho": spearman_rho(scores[0], scores[1])}


def run_seed(seed: int, epochs: int, dataset: str) -> dict:
    torch.manual_seed(seed)
    data = load_dataset(dataset, seed=seed, **DATASETS[dataset]["load"])
    space = get_space("compact-mbv3", resolutions=DATASETS[dataset]["resolutions"])
    net = space.build_supernet(data.num_classes)
    workdir = WORK / dataset / f"seed{seed}"
    workdir.mkdir(parents=True, exist_ok=True)
    _, train_seconds = timed(
        workdir / "supernet.seconds",
        lambda: train_supernet(
            space, net, data, TrainConfig(epochs=epochs, batch_size=64), workdir / "supernet.pt", seed=seed
        ),
    )
    net.eval()
    out = {"seed": seed, "data": dataset, "epochs": epochs, "train_seconds": train_seconds, "runs": {}}
    objectives = resolve_objectives(["error", "macs"])
    finals = {}
    for name, overrides in VARIANTS.items():
        sn = copy.deepcopy(net)
        evaluator = SubnetEvaluator(
            space, sn, data, EvalConfig(calib_size=DATASETS[dataset]["calib_size"], val_images="all"), seed=seed
        )
        metrics = ArchitectureMetrics(evaluator, None, needed_metrics(objectives, []))
        shift = make_shift_strategy(space, evaluator, data, SHIFTED[name], seed=seed) if name in SHIFTED else None
        run_dir = workdir / name.replace(" ", "")
        problem = SearchProblem(
            space,
            metrics,
            objectives,
            [],
            Archive(run_dir / "archive.jsonl"),
            seed=seed,
            shift=shift or NoShift(),
            files=SearchFiles(run_dir / "nat_state.json", run_dir / "nat_supernet.pt"),
        )
        search = NATSearch(problem, NATConfig(**{**SCALE, **overrides}))
        result, seconds = timed(run_dir / "search.seconds", search.run)
        finals[name] = (result, evaluator)
        out["runs"][name] = {
            "history": result.hv_history,
            "seconds": seconds,
            "evaluations": result.hv_history[-1]["evaluated"],
            "front_size": len(result.front),
        }
        print(f"seed {seed} {name}: {seconds:.0f} s, best error {result.hv_history[-1]['best_error']:.2f}", flush=True)
    # the cheap baseline: as many random architectures as NATv2 evaluated, scored by the frozen supernet
    n_random = out["runs"]["natv2"]["evaluations"]
    evaluator = SubnetEvaluator(
        space, net, data, EvalConfig(calib_size=DATASETS[dataset]["calib_size"], val_images="all"), seed=seed
    )
    random_front, seconds = random_search(space, evaluator, objectives, n_random, seed)
    out["random"] = {"front": random_front, "evaluations": n_random, "seconds": seconds}
    # one reference point per seed for every run's hypervolume
    fronts = [h["front"] for r in out["runs"].values() for h in r["history"]] + [random_front]
    ref = 1.01 * np.max([np.max(f, axis=0) for f in fronts], axis=0)
    for r in out["runs"].values():
        r["hv"] = [normalized_hypervolume(np.array(h["front"]), ref) for h in r["history"]]
    out["random"]["hv"] = normalized_hypervolume(np.array(random_front), ref)
    # surrogates on the final NATv2 archive, beside the MACs proxy and the target's own split-half ceiling
    result, evaluator = finals["natv2"]
    archs = [arch_from_dict(r["arch"]) for r in result.records]
    X = np.array([r["genome"] for r in result.records], dtype=float)
    y = np.array([r["metrics"]["error"] for r in result.records], dtype=float)
    out["surrogates"] = {name: cv_quality(name, X, y, seed) for name in ("lgbm", "rbf", "gp", "as")}
    mmacs = np.array([r["metrics"]["mmacs"] for r in result.records], dtype=float)
    out["surrogate_proxy_macs"] = {"kendall_tau": kendall_tau(-mmacs, y), "spearman_rho": spearman_rho(-mmacs, y)}
    out["surrogate_ceiling"] = split_half_tau(evaluator, archs, seed)
    # fine-tuning of NATv2's knee and max-accuracy subnets
    out["finetune"] = {}
    for how in ("knee", "max-acc"):
        record = pick(result.front, how, objectives)
        arch = arch_from_dict(record["arch"])
        res = finetune(lambda: evaluator.subnet(arch), arch.resolution, data, FinetuneRecipe(**FINETUNE), seed=seed)
        res.pop("model")
        out["finetune"][how] = {
            "key": record["key"],
            **{k: res[k] for k in ("best_epoch", "test_accuracy_before", "test_accuracy_after")},
        }
        print(
            f"seed {seed} finetune {how}: {res['test_accuracy_before']:.2f} -> {res['test_accuracy_after']:.2f}",
            flush=True,
        )
    return out


def ms(values) -> str:
    values = list(values)
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def summarise(per_seed: list[dict]) -> str:
    seeds = [s["seed"] for s in per_seed]
    lines = [
        f"# NAT vs NATv2 on {per_seed[0]['data']} (compact-mbv3, error + MMACs)",
        "",
        f"Seeds {seeds}; mean ± std over seeds. Generated by `bench/bench_nat.py` (supernet trained "
        f"{per_seed[0].get('epochs')} epochs; scale: {SCALE}).",
        "",
        "## Normalised hypervolume per iteration (common reference point per seed; higher is better)",
        "",
    ]
    iters = len(per_seed[0]["runs"]["natv2"]["hv"])
    lines += [
        "| variant | " + " | ".join(f"it {i}" for i in range(iters)) + " | evaluations | seconds |",
        "|---|" + "---|" * (iters + 2),
    ]
    for name in VARIANTS:
        hv = np.array([s["runs"][name]["hv"] for s in per_seed])
        cells = [ms(hv[:, i]) for i in range(iters)]
        ev = statistics.mean(s["runs"][name]["evaluations"] for s in per_seed)
        sec = statistics.mean(s["runs"][name]["seconds"] for s in per_seed)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ev:.0f} | {sec:.0f} |")
    if all("random" in s for s in per_seed):
        rnd = [s["random"] for s in per_seed]
        lines.append(
            "| *proxy: random search, frozen supernet* | "
            + " | ".join([""] * (iters - 1) + [ms(r["hv"] for r in rnd)])
            + f" | {statistics.mean(r['evaluations'] for r in rnd):.0f} | {statistics.mean(r['seconds'] for r in rnd):.0f} |"
        )
    lines += [
        "",
        "Final hypervolume minus NATv2's of the same seed (seeds " + " / ".join(str(x) for x in seeds) + "):",
        "",
        "| variant | minus NATv2 |",
        "|---|---|",
    ]
    final = {name: [s["runs"][name]["hv"][-1] for s in per_seed] for name in VARIANTS}
    if all("random" in s for s in per_seed):
        final["random search"] = [s["random"]["hv"] for s in per_seed]
    for name, values in final.items():
        if name != "natv2":
            lines.append(f"| {name} | " + " / ".join(f"{v - b:+.3f}" for v, b in zip(values, final["natv2"])) + " |")
    lines += [
        "",
        "## Surrogates: 10-fold CV on each seed's final NATv2 archive, and online tau on new candidates",
        "",
        "| surrogate | Kendall tau | Spearman rho | Pearson r | RMSE (error %) |",
        "|---|---|---|---|---|",
    ]
    for name in ("lgbm", "rbf", "gp", "as"):
        q = [s["surrogates"][name] for s in per_seed]
        lines.append(
            f"| {name} | {ms(x['kendall_tau'] for x in q)} | {ms(x['spearman_rho'] for x in q)} | "
            f"{ms(x['pearson_r'] for x in q)} | {ms(x['rmse'] for x in q)} |"
        )
    if all("surrogate_ceiling" in s for s in per_seed):
        for label, key in (
            ("proxy: -MMACs, nothing fitted", "surrogate_proxy_macs"),
            ("ceiling: split-half", "surrogate_ceiling"),
        ):
            q = [s[key] for s in per_seed]
            lines.append(f"| *{label}* | {ms(x['kendall_tau'] for x in q)} | {ms(x['spearman_rho'] for x in q)} | | |")
        lines += [
            "",
            "The ceiling is the target's own reliability: Kendall tau between the supernet's accuracies of the same "
            "archive on two disjoint halves of the val split (the surrogates predict the whole split's accuracy, "
            "which is somewhat less noisy).",
        ]
    lines += ["", "| run (its surrogate) | mean online tau on the K new candidates |", "|---|---|"]
    for name in VARIANTS:
        taus = [
            h["surrogate_quality"]["kendall_tau"]
            for s in per_seed
            for h in s["runs"][name]["history"]
            if h.get("surrogate_quality") and np.isfinite(h["surrogate_quality"]["kendall_tau"])
        ]
        lines.append(f"| {name} | {ms(taus) if taus else '-'} |")
    lines += [
        "",
        "## Two-phase fine-tuning of NATv2's returned subnets (test accuracy, %)",
        "",
        "| subnet | before | after | epochs found |",
        "|---|---|---|---|",
    ]
    for how in ("knee", "max-acc"):
        f = [s["finetune"][how] for s in per_seed]
        lines.append(
            f"| {how} | {ms(x['test_accuracy_before'] for x in f)} | {ms(x['test_accuracy_after'] for x in f)} | "
            f"{ms(x['best_epoch'] for x in f)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data", default="fashion-mnist", choices=sorted(DATASETS))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", metavar="DIR", help="a minute-long run of every step at a tiny scale, written to DIR")
    ap.add_argument("--summarise", action="store_true", help="Only rewrite nat_<data>.{json,md} from the seed files.")
    args = ap.parse_args()
    global RESULTS, WORK
    if args.smoke:
        RESULTS, WORK = Path(args.smoke) / "results", Path(args.smoke) / "work"
        SCALE.update(SMOKE)
        FINETUNE.update(epochs=1, patience=1)
        args.epochs = 1
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for seed in [] if args.summarise else (int(s) for s in args.seeds.split(",")):
        result = run_seed(seed, args.epochs, args.data)
        (RESULTS / f"nat_{args.data}_seed{seed}.json").write_text(json.dumps(result, indent=1))
    per_seed = [json.loads(p.read_text()) for p in sorted(RESULTS.glob(f"nat_{args.data}_seed*.json"))]
    if not per_seed:
        raise SystemExit(f"error: no seed files nat_{args.data}_seed*.json in {RESULTS}")
    (RESULTS / f"nat_{args.data}.json").write_text(json.dumps(per_seed, indent=1))
    (RESULTS / f"nat_{args.data}.md").write_text(summarise(per_seed))
    print(summarise(per_seed))


if __name__ == "__main__":
    main()
