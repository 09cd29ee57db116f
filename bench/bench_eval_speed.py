"""Benchmark (issue 16): where one subnet evaluation spends its time, and evaluators side by side.

Part 1 (``eval_profile``): where one evaluation spends its time, and its floor.

One evaluation = extract the subnet from the supernet, recalibrate its BatchNorm statistics on the
fixed calibration subset (500 training images, resized once per resolution and cached), then score
the validation split (6,000 Fashion-MNIST images, resized per evaluation today). Each phase is timed
in CPU seconds of this thread (``time.thread_time``: with one torch thread the work runs here), so the
breakdown holds on a busy machine where wall-clock seconds would not. The floor is the validation
forward alone of the same images through the same subnet; the ratio of a whole evaluation to it is
what better code could at most win without changing what is computed.

The architectures are a MACs-stratified sample of compact-mbv3 at resolutions 12-28 (the ground-truth
setting); the supernet is freshly initialised (the time a score takes does not depend on its weights).

Part 2 (``eval_speed``): five evaluators of the same architectures, alternating architecture by
architecture in one run, on a supernet trained on the same data (accuracies must mean something to be
compared): ``plain`` (the evaluator before this issue: BN recalibration, eager validation), ``fast``
(``SubnetEvaluator`` on every val image: the same recalibration, validation through ``inference_form``: BN folded,
native activations, channels_last) and the ``ofa`` package's recipe (``set_running_statistics`` and a
plain validation loop). Reported: per-architecture cost ratios (medians), and the agreement of
``fast`` with ``plain`` in validation images and Kendall tau. The fourth, ``ort``, exports the fast
evaluator's recalibrated subnet to ONNX and runs the validation in ONNX Runtime (1 thread, export and
session creation included): the issue's "ONNX Runtime for the validation pass" idea. The fifth,
``stratified``, is today's default on this split: ``fast`` on the weighted stratified validation subset
(``engine/evaluation/validation_subset.py``); its pilots' one-off cost is reported beside it.

Usage: python bench/bench_eval_speed.py [--archs 16] [--compare 40] [--supernet PATH]
Writes bench/results/eval_profile.{json,md} and eval_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_latency_eval import ofa_recipe_accuracy
from scipy.stats import kendalltau

from shiftnas.config import EvalConfig, TrainConfig
from shiftnas.data import load_dataset
from shiftnas.engine.checkpoint import load_supernet_weights, read_checkpoint
from shiftnas.engine.evaluation.subnet import SubnetEvaluator, accuracy, recalibrate_bn
from shiftnas.engine.groundtruth.table import sample_stratified
from shiftnas.engine.tensors import resize
from shiftnas.engine.training.supernet import train_supernet
from shiftnas.hardware.export import export_onnx
from shiftnas.hardware.macs import count_macs
from shiftnas.hardware.quantize import onnx_accuracy
from shiftnas.io import atomic_write_json, atomic_write_text
from shiftnas.search_spaces import get_space

RESULTS = Path(__file__).parent / "results"
PHASES = ("extract", "recalibrate", "val_resize", "val_forward", "val_bookkeeping")


@torch.no_grad()
def profile_one(space, supernet, arch, calib: torch.Tensor, val: tuple[torch.Tensor, torch.Tensor], batch: int):
    """CPU seconds of each phase of one evaluation of ``arch``, and its accuracy."""
    seconds = dict.fromkeys(PHASES, 0.0)
    t = time.thread_time()
    sub = space.extract(supernet, arch)
    seconds["extract"] = time.thread_time() - t
    t = time.thread_time()
    recalibrate_bn(sub, calib, batch)
    seconds["recalibrate"] = time.thread_time() - t
    images, labels = val
    correct = 0
    for start in range(0, len(labels), batch):
        t0 = time.thread_time()
        x = resize(images[start : start + batch], arch.resolution)
        t1 = time.thread_time()
        logits = sub(x)
        t2 = time.thread_time()
        correct += (logits.argmax(1) == labels[start : start + batch]).sum().item()
        F.cross_entropy(logits, labels[start : start + batch], reduction="sum").item()
        t3 = time.thread_time()
        seconds["val_resize"] += t1 - t0
        seconds["val_forward"] += t2 - t1
        seconds["val_bookkeeping"] += t3 - t2
    return seconds, 100.0 * correct / len(labels), sub


def profile(space, data, n_archs: int, out: Path) -> None:
    """Part 1: the phase breakdown of ``n_archs`` evaluations through a freshly initialised supernet."""
    cfg = EvalConfig(calib_size=500, val_images="all")  # the phases of the full evaluator
    torch.manual_seed(0)
    supernet = space.build_supernet(data.num_classes).eval()
    archs = sample_stratified(space, n_archs, seed=0, num_classes=data.num_classes)
    gen = torch.Generator().manual_seed(0)
    train_images = data.train.tensors[0]
    calib_raw = train_images[torch.randperm(len(train_images), generator=gen)[: cfg.calib_size]]
    calib = {r: resize(calib_raw, r) for r in space.resolutions}  # cached once, as the evaluator does
    val = data.val.tensors
    profile_one(space, supernet, archs[0], calib[archs[0].resolution], val, cfg.batch_size)  # warm-up
    rows = []
    for i, arch in enumerate(archs):
        seconds, acc, sub = profile_one(space, supernet, arch, calib[arch.resolution], val, cfg.batch_size)
        # the floor: the validation forward alone, inputs already at the resolution
        ready = resize(val[0], arch.resolution)
        with torch.no_grad():
            t = time.thread_time()
            for start in range(0, len(ready), cfg.batch_size):
                sub(ready[start : start + cfg.batch_size])
            floor = time.thread_time() - t
        total = sum(seconds.values())
        macs = count_macs(sub, tuple(space.input_size(arch)))
        rows.append({"key": arch.key(), "mmacs": macs / 1e6, "seconds": seconds, "total": total, "floor": floor})
        print(f"[{i + 1}/{len(archs)}] {arch.key()[:48]:48s} {total:6.2f} s (floor {floor:5.2f} s)", flush=True)
    totals = [r["total"] for r in rows]
    share = {p: sum(r["seconds"][p] for r in rows) / sum(totals) for p in PHASES}
    ratio = [r["total"] / r["floor"] for r in rows]
    result = {
        "archs": len(rows),
        "calib_images": cfg.calib_size,
        "val_images": len(val[1]),
        "batch_size": cfg.batch_size,
        "torch_threads": 1,
        "clock": "time.thread_time (CPU seconds of the evaluating thread)",
        "median_total_s": statistics.median(totals),
        "median_floor_s": statistics.median(r["floor"] for r in rows),
        "median_total_over_floor": statistics.median(ratio),
        "share": share,
        "rows": rows,
    }
    atomic_write_json(out / "eval_profile.json", result)
    lines = [
        "# Where one subnet evaluation spends its time (issue 16)",
        "",
        f"{len(rows)} MACs-stratified compact-mbv3 architectures (res 12-28), freshly initialised supernet; "
        f"BN recalibration on {cfg.calib_size} training images (resized once per resolution), validation on "
        f"{len(val[1])} Fashion-MNIST images, batch {cfg.batch_size}, 1 torch thread; CPU seconds of the "
        "evaluating thread (`time.thread_time`), so a busy machine does not inflate them.",
        "",
        "| phase | share of the time |",
        "|---|---|",
        *[f"| {p} | {100 * share[p]:.1f} % |" for p in PHASES],
        "",
        f"- One evaluation: median **{result['median_total_s']:.2f} s**; its floor (validation forward alone, "
        f"inputs already resized): median {result['median_floor_s']:.2f} s; evaluation / floor: median "
        f"**{result['median_total_over_floor']:.2f}×** (range {min(ratio):.2f}–{max(ratio):.2f}).",
        "",
        "| architecture | MMACs | total s | floor s | extract | recalibrate | val resize | val forward |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["mmacs"]):
        s = r["seconds"]
        lines.append(
            f"| `{r['key']}` | {r['mmacs']:.2f} | {r['total']:.2f} | {r['floor']:.2f} | {s['extract']:.3f} | "
            f"{s['recalibrate']:.2f} | {s['val_resize']:.2f} | {s['val_forward']:.2f} |"
        )
    atomic_write_text(out / "eval_profile.md", "\n".join(lines) + "\n")
    print("\n".join(lines[:12]))


def trained_supernet(space, data, path: str | None):
    """The supernet at ``path``, or one trained 3 epochs here (checkpointed, so a rerun reuses it)."""
    net = space.build_supernet(data.num_classes)
    ckpt = Path(path) if path else Path("runs/bench_eval_speed/supernet.pt")
    if not (ckpt.is_file() and read_checkpoint(ckpt).get("training", {}).get("finished")):
        train_supernet(space, net, data, TrainConfig(epochs=3), ckpt, seed=0)  # resumes an interrupted one
    load_supernet_weights(net, read_checkpoint(ckpt)["state_dict"])
    return net.eval()


def compare(space, data, n_archs: int, supernet_path: str | None, out: Path) -> None:
    """Part 2: plain vs fast evaluator vs the ofa recipe on the same architectures, alternating."""
    cfg = EvalConfig(calib_size=500, val_images="all")  # the evaluator before the stratified subset
    net = trained_supernet(space, data, supernet_path)
    archs = sample_stratified(space, n_archs, seed=1, num_classes=data.num_classes)
    fast = SubnetEvaluator(space, net, data, cfg, seed=0)
    calib = fast.calibration
    stratified_cfg = EvalConfig()  # today's defaults: 500 calibration images, the stratified subset on this split
    t = time.thread_time()  # the pilots: scored once per evaluator, before its first 'val' score
    subset = SubnetEvaluator(space, net, data, stratified_cfg, seed=0).validation_subset()
    pilots_s = time.thread_time() - t
    images, labels = data.val.tensors

    def plain(arch):
        sub = recalibrate_bn(space.extract(net, arch), resize(calib, arch.resolution), cfg.batch_size)
        return accuracy(sub, images, labels, arch.resolution, cfg.batch_size)

    def on_onnx_runtime(arch):  # the same recalibrated subnet, exported; validation in ONNX Runtime (1 thread)
        sub = SubnetEvaluator(space, net, data, cfg, calibration=calib).subnet(arch)
        onnx_model = export_onnx(sub, (1, *space.input_size(arch)))
        return onnx_accuracy(onnx_model, resize(images, arch.resolution), labels, cfg.batch_size)

    ways = {
        "plain": plain,
        "fast": lambda arch: SubnetEvaluator(space, net, data, cfg, calibration=calib).score(arch).accuracy,
        "ofa": lambda arch: ofa_recipe_accuracy(space, net, arch, calib, data, cfg.batch_size),
        "ort": on_onnx_runtime,
        "stratified": lambda arch: (
            SubnetEvaluator(space, net, data, stratified_cfg, calibration=calib, val_subset=subset).score(arch).accuracy
        ),
    }
    rows = []
    for i, arch in enumerate(archs):
        row = {"key": arch.key()}
        order = list(ways) if i % 2 == 0 else list(reversed(ways))  # alternate who goes first
        for name in order:
            t = time.thread_time()
            row[name] = ways[name](arch)
            row[f"{name}_s"] = time.thread_time() - t
        rows.append(row)
        print(
            f"[{i + 1}/{len(archs)}] {arch.key()[:40]:40s} "
            + " ".join(f"{n} {row[n]:.2f}% {row[n + '_s']:.2f}s" for n in ways),
            flush=True,
        )
    n_val = len(labels)
    images_apart = [round(abs(r["fast"] - r["plain"]) * n_val / 100) for r in rows]
    within_one = sum(d <= 1 for d in images_apart) / len(rows)
    tau = kendalltau([r["plain"] for r in rows], [r["fast"] for r in rows]).statistic
    ort_apart = [round(abs(r["ort"] - r["fast"]) * n_val / 100) for r in rows]
    ort_tau = kendalltau([r["fast"] for r in rows], [r["ort"] for r in rows]).statistic
    ratio = {
        "plain_over_fast": statistics.median(r["plain_s"] / r["fast_s"] for r in rows),
        "ofa_over_fast": statistics.median(r["ofa_s"] / r["fast_s"] for r in rows),
        "ofa_over_plain": statistics.median(r["ofa_s"] / r["plain_s"] for r in rows),
        "fast_over_ort": statistics.median(r["fast_s"] / r["ort_s"] for r in rows),
        "ofa_over_ort": statistics.median(r["ofa_s"] / r["ort_s"] for r in rows),
        "ofa_over_stratified": statistics.median(r["ofa_s"] / r["stratified_s"] for r in rows),
        "fast_over_stratified": statistics.median(r["fast_s"] / r["stratified_s"] for r in rows),
    }
    # the subset's own error: against the same evaluator on every val image
    strat_apart = [round(abs(r["stratified"] - r["fast"]) * n_val / 100) for r in rows]
    strat_tau = kendalltau([r["fast"] for r in rows], [r["stratified"] for r in rows]).statistic
    per_eval = {n: statistics.median(r[f"{n}_s"] for r in rows) for n in ways}
    # evaluations after which the pilots' one-off cost is paid back against every image
    break_even = pilots_s / max(1e-9, per_eval["fast"] - per_eval["stratified"])
    result = {
        "archs": len(rows),
        "val_images": n_val,
        "calib_images": len(calib),
        "clock": "time.thread_time (CPU seconds of the evaluating thread), 1 torch thread",
        "median_s": per_eval,
        "ratios": ratio,
        "fast_vs_plain": {
            "within_one_val_image": within_one,
            "max_images_apart": max(images_apart),
            "kendall_tau": tau,
        },
        "ort_vs_fast": {
            "within_one_val_image": sum(d <= 1 for d in ort_apart) / len(rows),
            "max_images_apart": max(ort_apart),
            "kendall_tau": ort_tau,
        },
        "stratified_vs_fast": {
            "within_one_val_image": sum(d <= 1 for d in strat_apart) / len(rows),
            "median_images_apart": statistics.median(strat_apart),
            "max_images_apart": max(strat_apart),
            "kendall_tau": strat_tau,
            "val_images_run": len(subset.indices),
            "pilots": stratified_cfg.pilots,
            "pilots_s": pilots_s,
            "break_even_evaluations": break_even,
        },
        "rows": rows,
    }
    atomic_write_json(out / "eval_speed.json", result)
    lines = [
        "# Subnet evaluation: before, now and the ofa recipe (issue 16)",
        "",
        f"{len(rows)} MACs-stratified compact-mbv3 architectures (res 12-28) of a supernet trained 3 epochs on "
        f"10,000 Fashion-MNIST images; BN recalibration on the same {len(calib)} training images, accuracy on "
        f"{n_val} val images; the evaluators alternate architecture by architecture in one run, 1 torch "
        "thread, CPU seconds of the evaluating thread.",
        "",
        "| evaluator | median s per architecture |",
        "|---|---|",
        *[f"| {n} | {result['median_s'][n]:.2f} |" for n in ways],
        "",
        f"- ofa recipe / fast: median **{ratio['ofa_over_fast']:.2f}×**; plain / fast: median "
        f"**{ratio['plain_over_fast']:.2f}×**; ofa recipe / plain: {ratio['ofa_over_plain']:.2f}× (medians of "
        "per-architecture ratios).",
        f"- fast vs plain: {100 * within_one:.0f} % of the architectures within one val image (at most "
        f"{max(images_apart)} apart), Kendall tau {tau:.3f}.",
        f"- ort (the fast evaluator's recalibrated subnet exported to ONNX, validation in ONNX Runtime, 1 thread, "
        f"export included): fast / ort median **{ratio['fast_over_ort']:.2f}×**, ofa recipe / ort "
        f"**{ratio['ofa_over_ort']:.2f}×**; {100 * result['ort_vs_fast']['within_one_val_image']:.0f} % of the "
        f"architectures within one val image of fast (at most {max(ort_apart)} apart), Kendall tau {ort_tau:.3f}.",
        f"- stratified (today's default on this split: fast with 'val' scored on {len(subset.indices)} of the "
        f"{n_val} images, weighted, `validation_subset.py`): ofa recipe / stratified median "
        f"**{ratio['ofa_over_stratified']:.2f}×**, fast / stratified **{ratio['fast_over_stratified']:.2f}×**. An "
        f"unbiased estimate of fast's number, not the same number: "
        f"{100 * result['stratified_vs_fast']['within_one_val_image']:.0f} % of the architectures within one val "
        f"image of fast (median {statistics.median(strat_apart):.0f}, at most {max(strat_apart)} apart), Kendall "
        f"tau vs fast {strat_tau:.3f} (the ranking against the ground truth: `eval_budget_seed*.md`). Its "
        f"{stratified_cfg.pilots} pilot scores cost {pilots_s:.1f} s once per evaluator, paid back after "
        f"{break_even:.0f} evaluations; spread over 200 evaluations, ofa recipe / stratified "
        f"{result['median_s']['ofa'] / (result['median_s']['stratified'] + pilots_s / 200):.2f}× (ratio of medians).",
    ]
    atomic_write_text(out / "eval_speed.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=16, help="Architectures of the phase breakdown (part 1).")
    ap.add_argument("--compare", type=int, default=40, help="Architectures of the side-by-side (part 2; 0: skip).")
    ap.add_argument("--supernet", help="A trained compact-mbv3 supernet (res 12-28) for part 2.")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = get_space("compact-mbv3", resolutions=[12, 16, 20, 24, 28])
    data = load_dataset("fashion-mnist", seed=0, image_size=28, train_size=10_000)
    out = Path(args.results)
    if args.archs:
        profile(space, data, args.archs, out)
    if args.compare:
        compare(space, data, args.compare, args.supernet, out)


if __name__ == "__main__":
    main()
