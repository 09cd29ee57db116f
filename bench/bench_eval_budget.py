"""Benchmark (issue 16): how many calibration and validation images does a supernet score need?

One evaluation = BN recalibration on ``calib`` training images + the validation forward over ``val``
images; the validation forward is ~87 % of its cost (``eval_profile.md``), so the validation size,
not the code, bounds how fast a score can be. This benchmark asks what smaller budgets cost in
*ranking*: for every architecture of the Fashion-MNIST ground-truth table it scores the subnet of a
supernet trained on the table's own train subset (the ranking benchmark's seed-0 supernet, reused if
it is on disk) at every calibration size (nested subsets: the evaluator's seeded draw, cut short), and
keeps every validation image's correctness and loss, so that each validation size is a seeded random
subset of the same forward passes (``--draws`` subsets per size; their spread is reported).

For each (calibration, validation) budget:
  * Kendall tau of the supernet's accuracy (and of its loss, negated) against the table's mean
    stand-alone test accuracy, with the table's own seed-vs-seed tau (the ceiling) and MACs' tau
    (the proxy) beside it;
  * the paired-bootstrap 95 % interval of tau(budget) - tau(today's budget) over architectures;
  * agreement with today's evaluator (500 / every val image): Kendall tau between the two score
    vectors, and at the full validation split the share of architectures within one image;
  * cost: CPU seconds of the evaluating thread per evaluation (recalibration at that size + the
    validation forward of that many images, measured batch by batch), as a ratio to today's.

Usage: python bench/bench_eval_budget.py [--table groundtruth/compact-mbv3_fashion.jsonl]
Writes bench/results/eval_budget_seed<N>.{json,md} (eval_budget.md: the first run, before the stratified
subsets, with calibration sizes 64-2000); per-architecture passes are kept in
runs/bench_eval_budget/passes_seed<N>.pt, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shiftnas.config import EvalConfig, TrainConfig, load_config
from shiftnas.data import load_dataset
from shiftnas.engine.evaluation.inference import inference_form
from shiftnas.engine.evaluation.subnet import recalibrate_bn
from shiftnas.engine.evaluation.validation_subset import pilot_architectures, stratified_subset
from shiftnas.engine.groundtruth.reliability import reliability_report
from shiftnas.engine.groundtruth.table import GroundTruthTable, data_overrides
from shiftnas.engine.tensors import channels_last, resize
from shiftnas.engine.training.supernet import train_supernet
from shiftnas.io import atomic_torch_save, atomic_write_json, atomic_write_text
from shiftnas.predictors.ranking import kendall_tau, paired_bootstrap_tau_delta
from shiftnas.search_spaces import get_space

RESULTS = Path(__file__).parent / "results"
WORK = Path("runs/bench_eval_budget")
CALIB_SIZES = (64, 128, 256, 500, 1000, 2000)
VAL_SIZES = (500, 1000, 2000, 3000, 6000)
PILOTS = (8, 16)  # pilot subnets of the stratified validation subset (validation_subset.py)
FRACTIONS = (0.1, 0.2, 0.3)  # share of the all-right / all-wrong strata that is run
TODAY = (500, 6000)


@torch.no_grad()
def passes(space, net, arch, calib: torch.Tensor, val: tuple[torch.Tensor, torch.Tensor], batch: int) -> dict:
    """One evaluation of ``arch``: per-image correctness and loss on ``val`` (in its order), the CPU
    seconds of the recalibration and of every validation batch."""
    sub = space.extract(net, arch)
    x = resize(calib, arch.resolution).contiguous(memory_format=torch.channels_last)
    t = time.thread_time()
    with channels_last(sub):
        recalibrate_bn(sub, x, batch)
    recal_s = time.thread_time() - t
    fast = inference_form(sub)
    images, labels = val
    correct, losses, batch_s = [], [], []
    for start in range(0, len(labels), batch):
        t = time.thread_time()
        xb = resize(images[start : start + batch], arch.resolution).contiguous(memory_format=torch.channels_last)
        logits = fast(xb)
        batch_s.append(time.thread_time() - t)
        y = labels[start : start + batch]
        correct.append(logits.argmax(1) == y)
        losses.append(F.cross_entropy(logits, y, reduction="none"))
    return {
        "correct": torch.cat(correct).numpy(),
        "loss": torch.cat(losses).numpy().astype(np.float32),
        "recal_s": recal_s,
        "batch_s": batch_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="groundtruth/compact-mbv3_fashion.jsonl")
    ap.add_argument(
        "--seed", type=int, default=0, help="The ranking benchmark's supernet seed (and its calibration draw)."
    )
    ap.add_argument("--supernet", help="Default: runs/bench_ranking_fashion/base_<seed>.pt; trained here if missing.")
    ap.add_argument("--calib", default=",".join(map(str, CALIB_SIZES)), help="Calibration sizes, comma-separated.")
    ap.add_argument("--draws", type=int, default=5, help="Random validation subsets per size.")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    args.supernet = args.supernet or f"runs/bench_ranking_fashion/base_{args.seed}.pt"
    calib_sizes = tuple(int(c) for c in args.calib.split(","))
    if TODAY[0] not in calib_sizes:
        raise SystemExit(f"--calib must include today's {TODAY[0]}")
    torch.set_num_threads(1)
    table = GroundTruthTable(args.table)
    meta = table.meta
    space = get_space(meta["space"]["name"], resolutions=meta["space"].get("resolutions"))
    d = load_config(None, data_overrides(meta)).data
    data = load_dataset(d.dataset, seed=d.seed, train_size=d.train_size)
    torch.manual_seed(args.seed)
    net = space.build_supernet(data.num_classes)
    train_supernet(space, net, data, TrainConfig(epochs=6), args.supernet, seed=args.seed)  # = bench_ranking's
    net.eval()
    cfg = EvalConfig()
    train_images = data.train.tensors[0]
    order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(args.seed))  # the evaluator's
    val = data.val.tensors
    n_val = len(val[1])
    rows = table.rows()

    WORK.mkdir(parents=True, exist_ok=True)
    store = WORK / f"passes_seed{args.seed}.pt"
    done: dict = torch.load(store, weights_only=False) if store.exists() else {}
    # the stratified subsets' pilots: the engine's own choice, one set per draw (the draw's seed)
    pilots = {d: pilot_architectures(space, max(PILOTS), d) for d in range(args.draws)}
    for c in calib_sizes:
        calib = train_images[order[:c]]
        jobs = [(f"{c}|{r['key']}", r["arch"]) for r in rows]
        jobs += list({f"{c}|pilot|{a.key()}": a for d in pilots for a in pilots[d]}.items())
        for i, (ident, arch) in enumerate(jobs):
            if ident in done:
                continue
            done[ident] = passes(space, net, arch, calib, val, cfg.batch_size)
            if (i + 1) % 20 == 0 or i + 1 == len(jobs):
                atomic_torch_save(store, done)
                print(f"calib {c}: {i + 1}/{len(jobs)}", flush=True)
        atomic_torch_save(store, done)

    truth = np.array([r["mean_test_accuracy"] for r in rows])
    macs = np.array([r["mmacs"] for r in rows])
    rel = reliability_report(table)
    rng = np.random.default_rng(0)
    subsets = {v: [rng.permutation(n_val)[:v] for _ in range(args.draws if v < n_val else 1)] for v in VAL_SIZES}

    def scores(c: int, idx: np.ndarray, what: str) -> np.ndarray:
        if what == "accuracy":
            return np.array([100 * np.mean(done[f"{c}|{r['key']}"]["correct"][idx]) for r in rows])
        return -np.array([np.mean(done[f"{c}|{r['key']}"]["loss"][idx]) for r in rows])

    def cost(c: int, v: int) -> float:
        per = [done[f"{c}|{r['key']}"] for r in rows]
        return float(np.median([p["recal_s"] + sum(p["batch_s"][: int(np.ceil(v / cfg.batch_size))]) for p in per]))

    full = np.arange(n_val)
    reference = scores(TODAY[0], full, "accuracy")
    today_cost = cost(*TODAY)
    cells = []
    for c in calib_sizes:
        for v in VAL_SIZES:
            taus, taus_loss, agree, draws = [], [], [], []
            for idx in subsets[v]:
                acc = scores(c, idx, "accuracy")
                draws.append(acc)
                taus.append(kendall_tau(acc, truth))
                taus_loss.append(kendall_tau(scores(c, idx, "loss"), truth))
                agree.append(kendall_tau(acc, reference))
            cell = {
                "calib": c,
                "val": v,
                "tau_gt": float(np.mean(taus)),
                "tau_gt_std": float(np.std(taus)),
                "tau_gt_loss": float(np.mean(taus_loss)),
                "tau_vs_today": float(np.mean(agree)),
                "delta_tau_ci95": paired_bootstrap_tau_delta(draws, reference, truth),
                "seconds": cost(c, v),
                "speedup": today_cost / cost(c, v),
            }
            if v == n_val:
                apart = np.abs(scores(c, full, "accuracy") - reference) * n_val / 100
                cell["within_one_image"] = float(np.mean(np.round(apart) <= 1))
            cells.append(cell)
    for c in calib_sizes:
        correct = np.array([done[f"{c}|{r['key']}"]["correct"] for r in rows], dtype=float)
        losses = np.array([done[f"{c}|{r['key']}"]["loss"] for r in rows], dtype=float)
        same_calib = scores(c, full, "accuracy")  # every image at this calibration size
        for n_pilots in PILOTS:
            for fraction in FRACTIONS:
                subsets_d = [
                    stratified_subset(
                        np.array([done[f"{c}|pilot|{a.key()}"]["correct"] for a in pilots[d][:n_pilots]]), fraction, d
                    )
                    for d in range(args.draws)
                ]
                draws = [
                    np.array([sub.accuracy(torch.from_numpy(x[sub.indices.numpy()])) for x in correct])
                    for sub in subsets_d
                ]
                images = int(np.median([len(sub.indices) for sub in subsets_d]))
                taus = [kendall_tau(acc, truth) for acc in draws]
                apart = [np.round(np.abs(acc - same_calib) * n_val / 100) for acc in draws]
                pilot_s = [
                    sum(
                        done[f"{c}|pilot|{a.key()}"]["recal_s"] + sum(done[f"{c}|pilot|{a.key()}"]["batch_s"])
                        for a in pilots[d][:n_pilots]
                    )
                    for d in range(args.draws)
                ]
                cells.append(
                    {
                        "calib": c,
                        "val": images,
                        "stratified": {"pilots": n_pilots, "easy_fraction": fraction},
                        "tau_gt": float(np.mean(taus)),
                        "tau_gt_std": float(np.std(taus)),
                        "tau_gt_loss": float(
                            np.mean(
                                [
                                    kendall_tau(-(losses[:, sub.indices.numpy()] @ sub.weights.numpy()), truth)
                                    for sub in subsets_d
                                ]
                            )
                        ),
                        "tau_vs_today": float(np.mean([kendall_tau(acc, reference) for acc in draws])),
                        "delta_tau_ci95": paired_bootstrap_tau_delta(draws, reference, truth),
                        # the subset's own error: against every image at the same calibration size
                        "delta_tau_vs_same_calib_ci95": paired_bootstrap_tau_delta(draws, same_calib, truth),
                        "tau_vs_same_calib": float(np.mean([kendall_tau(acc, same_calib) for acc in draws])),
                        "within_one_image_same_calib": float(np.mean([np.mean(a <= 1) for a in apart])),
                        "median_images_apart_same_calib": float(np.median(np.concatenate(apart))),
                        "seconds": cost(c, images),
                        "speedup": today_cost / cost(c, images),
                        "pilot_seconds": float(np.median(pilot_s)),
                    }
                )
    out = {
        "table": args.table,
        "n_architectures": len(rows),
        "supernet": args.supernet,
        "today": {"calib": TODAY[0], "val": TODAY[1], "seconds": today_cost},
        "draws": args.draws,
        "clock": "time.thread_time (CPU seconds of the evaluating thread), 1 torch thread",
        "ceiling_seed_tau": rel["seed_tau_mean"],
        "proxy_tau_macs": kendall_tau(macs, truth),
        "cells": cells,
    }
    results = Path(args.results)
    name = f"eval_budget_seed{args.seed}"  # eval_budget.md: the first run (2026-12-03), every calibration size
    atomic_write_json(results / f"{name}.json", out)
    write_markdown(out, results / f"{name}.md")


def write_markdown(out: dict, path: Path) -> None:
    lines = [
        "# How many images does a supernet score need? (issue 16)",
        "",
        f"{out['n_architectures']} architectures of `{Path(out['table']).name}`, scored through `{out['supernet']}` "
        f"(compact-mbv3 supernet, 6 epochs on the table's 10,000 training images). The full evaluator (`val_images: all`): "
        f"{out['today']['calib']} calibration images, all {out['today']['val']} val images, "
        f"{out['today']['seconds']:.2f} CPU s per evaluation (median). Validation subsets: {out['draws']} seeded "
        "draws per size (tau: mean ± std over draws). Stratified: the engine's weighted subset "
        "(`validation_subset.py`: every image the pilots disagree on, the given share of the rest), one pilot "
        "set and draw per seed (the engine's own pilots for seeds 0, 1, ...), as many draws; 'val images run' is "
        "the median count; the pilots cost their CPU s once per evaluator. Ceiling (the table's seed-vs-seed tau): "
        f"**{out['ceiling_seed_tau']:.3f}**; proxy (MACs' tau): **{out['proxy_tau_macs']:.3f}**.",
        "",
        "| calib | val | tau vs GT (accuracy) | tau vs GT (loss) | Δtau vs full (mean over draws), 95 % CI "
        "| tau vs the full scores "
        "| within 1 image | CPU s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in [c for c in out["cells"] if "stratified" not in c]:
        lo, hi = c["delta_tau_ci95"]
        within = f"{100 * c['within_one_image']:.0f} %" if "within_one_image" in c else ""
        lines.append(
            f"| {c['calib']} | {c['val']} | {c['tau_gt']:.3f} ± {c['tau_gt_std']:.3f} | {c['tau_gt_loss']:.3f} | "
            f"[{lo:+.3f}, {hi:+.3f}] | {c['tau_vs_today']:.3f} | {within} | {c['seconds']:.2f} | "
            f"{c['speedup']:.2f}× |"
        )
    lines += [
        "",
        "Stratified subsets (`eval.val_images: stratified`), against the full evaluator (500 calibration images, "
        "every val image) and against every val image at the same calibration size (the subset's own error):",
        "",
        "| calib | pilots | share of the rest | val images run | tau vs GT | Δtau vs full, 95 % CI "
        "| Δtau vs same calib, all images, 95 % CI | tau vs same calib | within 1 image (same calib) "
        "| median images apart | CPU s | speed-up | pilots CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in [c for c in out["cells"] if "stratified" in c]:
        st, (lo, hi), (slo, shi) = c["stratified"], c["delta_tau_ci95"], c["delta_tau_vs_same_calib_ci95"]
        lines.append(
            f"| {c['calib']} | {st['pilots']} | {100 * st['easy_fraction']:.0f} % | {c['val']} | "
            f"{c['tau_gt']:.3f} ± {c['tau_gt_std']:.3f} | [{lo:+.3f}, {hi:+.3f}] | [{slo:+.3f}, {shi:+.3f}] | "
            f"{c['tau_vs_same_calib']:.3f} | {100 * c['within_one_image_same_calib']:.0f} % | "
            f"{c['median_images_apart_same_calib']:.0f} | {c['seconds']:.2f} | {c['speedup']:.2f}× | "
            f"{c['pilot_seconds']:.1f} |"
        )
    atomic_write_text(path, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
