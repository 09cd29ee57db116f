"""Benchmark: NAT vs NATv2, each NATv2 change switched off in turn, the surrogates, and fine-tuning.

For each seed a compact supernet is trained on digits; then, from copies of it, the NAT / NATv2
loop runs with error + MMACs as objectives:
  nat                    genome-uniform init, no pre-processing, growing archive, RBF ensemble
  natv2                  architecture-space init, pre-processing x10, bounded archive, LightGBM
  natv2 - init           ... with genome-uniform init
  natv2 - preprocess     ... without pre-processing
  natv2 - bounded        ... with a growing archive
  natv2 - predictor      ... with the RBF ensemble
Hypervolume per iteration is recomputed for every run of a seed against one common reference point
(1.01 x the worst error / MMACs any of the seed's runs saw), so the variants are comparable.
Surrogates: every family's 10-fold cross-validated tau / rho / RMSE on each seed's final NATv2
archive, and the online tau of each run's surrogate on its new candidates. Fine-tuning: test
accuracy before / after two-phase fine-tuning of the NATv2 front's knee and max-accuracy subnets.

Usage: python bench/bench_nat.py --seeds 0,1,2   (one process per seed set; results merged per seed file)
Writes bench/results/nat_seed<S>.json, then nat.json and nat.md from every seed file present.
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

from shiftnas.config import EvalConfig, TrainConfig
from shiftnas.data import load_dataset
from shiftnas.engine.evaluation import SubnetEvaluator
from shiftnas.engine.finetune import FinetuneRecipe, finetune
from shiftnas.engine.metrics import ArchitectureMetrics
from shiftnas.engine.nat import NATSearch
from shiftnas.engine.nat_config import NATConfig
from shiftnas.engine.objectives import needed_metrics, resolve_objectives
from shiftnas.engine.search import normalized_hypervolume
from shiftnas.engine.training import train_supernet
from shiftnas.predictors.surrogate import fit_quality, make_surrogate
from shiftnas.report import pick
from shiftnas.search_spaces import Arch, get_space

RESULTS = Path(__file__).parent / "results"
SCALE = dict(archive_size=20, oversample=10, candidates=5, iterations=6, top_n=10, aux_pop_size=30,
             aux_generations=10, adapt_steps=10)
VARIANTS = {
    "nat": dict(policy="nat"),
    "natv2": dict(policy="natv2"),
    "natv2 - init": dict(policy="natv2", init="genome-uniform"),
    "natv2 - preprocess": dict(policy="natv2", preprocess=False),
    "natv2 - bounded": dict(policy="natv2", update="grow"),
    "natv2 - predictor": dict(policy="natv2", surrogate="rbf"),
}


def cv_quality(name: str, X: np.ndarray, y: np.ndarray, seed: int) -> dict[str, float]:
    from sklearn.model_selection import KFold

    pred = np.empty_like(y)
    for train, test in KFold(10, shuffle=True, random_state=seed).split(X):
        pred[test] = make_surrogate(name, seed).fit(X[train], y[train]).predict(X[test])
    return fit_quality(pred, y)


def run_seed(seed: int, epochs: int) -> dict:
    torch.manual_seed(seed)
    data = load_dataset("digits", seed=seed, image_size=24)
    space = get_space("compact-mbv3", resolutions=[16, 20, 24])
    net = space.build_supernet(data.num_classes)
    t0 = time.time()
    workdir = Path("runs/bench_nat")
    workdir.mkdir(parents=True, exist_ok=True)
    train_supernet(space, net, data, TrainConfig(epochs=epochs, batch_size=64), workdir / f"supernet_{seed}.pt",
                   seed=seed)
    net.eval()
    out = {"seed": seed, "train_seconds": time.time() - t0, "runs": {}}
    objectives = resolve_objectives(["error", "macs"])
    finals = {}
    for name, overrides in VARIANTS.items():
        sn = copy.deepcopy(net)
        evaluator = SubnetEvaluator(space, sn, data, EvalConfig(), seed=seed)
        metrics = ArchitectureMetrics(evaluator, None, needed_metrics(objectives, []))
        t0 = time.time()
        search = NATSearch(space, metrics, objectives, [], NATConfig(**{**SCALE, **overrides}), seed=seed)
        result = search.run()
        finals[name] = (result, evaluator)
        out["runs"][name] = {"history": result.hv_history, "seconds": time.time() - t0,
                             "evaluations": len(result.archive), "front_size": len(result.front)}
        print(f"seed {seed} {name}: {time.time() - t0:.0f} s, best error {result.hv_history[-1]['best_error']:.2f}",
              flush=True)
    # one reference point per seed for every run's hypervolume
    worst = np.max([np.max(h["front"], axis=0) for r in out["runs"].values() for h in r["history"]], axis=0)
    ref = 1.01 * worst
    for r in out["runs"].values():
        r["hv"] = [normalized_hypervolume(np.array(h["front"]), ref) for h in r["history"]]
    # surrogates on the final NATv2 archive
    result, evaluator = finals["natv2"]
    X = np.array([r["genome"] for r in result.records], dtype=float)
    y = np.array([r["metrics"]["error"] for r in result.records], dtype=float)
    out["surrogates"] = {name: cv_quality(name, X, y, seed) for name in ("lgbm", "rbf", "gp", "as")}
    # fine-tuning of NATv2's knee and max-accuracy subnets
    out["finetune"] = {}
    for how in ("knee", "max-acc"):
        record = pick(result.front, how, objectives)
        arch = Arch.from_dict(record["arch"])
        res = finetune(lambda: evaluator.subnet(arch), arch.resolution, data, FinetuneRecipe(epochs=10, patience=3),
                       seed=seed)
        res.pop("model")
        out["finetune"][how] = {"key": record["key"], **{k: res[k] for k in ("best_epoch", "test_accuracy_before",
                                                                              "test_accuracy_after")}}
        print(f"seed {seed} finetune {how}: {res['test_accuracy_before']:.2f} -> {res['test_accuracy_after']:.2f}",
              flush=True)
    return out


def ms(values) -> str:
    values = list(values)
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def summarise(per_seed: list[dict]) -> str:
    seeds = [s["seed"] for s in per_seed]
    lines = ["# NAT vs NATv2 on digits (compact-mbv3, error + MMACs)", "",
             f"Seeds {seeds}; mean ± std over seeds. Generated by `bench/bench_nat.py` (scale: {SCALE}).", "",
             "## Normalised hypervolume per iteration (common reference point per seed; higher is better)", ""]
    iters = len(per_seed[0]["runs"]["natv2"]["hv"])
    lines += ["| variant | " + " | ".join(f"it {i}" for i in range(iters)) + " | evaluations | seconds |",
              "|---|" + "---|" * (iters + 2)]
    for name in VARIANTS:
        hv = np.array([s["runs"][name]["hv"] for s in per_seed])
        cells = [ms(hv[:, i]) for i in range(iters)]
        ev = statistics.mean(s["runs"][name]["evaluations"] for s in per_seed)
        sec = statistics.mean(s["runs"][name]["seconds"] for s in per_seed)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ev:.0f} | {sec:.0f} |")
    lines += ["", "## Surrogates: 10-fold CV on each seed's final NATv2 archive, and online tau on new candidates", "",
              "| surrogate | Kendall tau | Spearman rho | Pearson r | RMSE (error %) |", "|---|---|---|---|---|"]
    for name in ("lgbm", "rbf", "gp", "as"):
        q = [s["surrogates"][name] for s in per_seed]
        lines.append(f"| {name} | {ms(x['kendall_tau'] for x in q)} | {ms(x['spearman_rho'] for x in q)} | "
                     f"{ms(x['pearson_r'] for x in q)} | {ms(x['rmse'] for x in q)} |")
    lines += ["", "| run (its surrogate) | mean online tau on the K new candidates |", "|---|---|"]
    for name in VARIANTS:
        taus = [h["surrogate_quality"]["kendall_tau"] for s in per_seed for h in s["runs"][name]["history"]
                if h.get("surrogate_quality") and np.isfinite(h["surrogate_quality"]["kendall_tau"])]
        lines.append(f"| {name} | {ms(taus) if taus else '-'} |")
    lines += ["", "## Two-phase fine-tuning of NATv2's returned subnets (test accuracy, %)", "",
              "| subnet | before | after | epochs found |", "|---|---|---|---|"]
    for how in ("knee", "max-acc"):
        f = [s["finetune"][how] for s in per_seed]
        lines.append(f"| {how} | {ms(x['test_accuracy_before'] for x in f)} | {ms(x['test_accuracy_after'] for x in f)} | "
                     f"{ms(x['best_epoch'] for x in f)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        (RESULTS / f"nat_seed{seed}.json").write_text(json.dumps(run_seed(seed, args.epochs), indent=1))
    per_seed = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("nat_seed*.json"))]
    (RESULTS / "nat.json").write_text(json.dumps(per_seed, indent=1))
    (RESULTS / "nat.md").write_text(summarise(per_seed))
    print(summarise(per_seed))


if __name__ == "__main__":
    main()
