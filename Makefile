# Two commands do everything: `make run` (set up + the default NAS run) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

FASHION := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz

.PHONY: run test lint format bench bench-latency bench-ranking bench-nat bench-transfer bench-scaling bench-speed bench-train-speed bench-latency-predictors bench-latency-cost bench-stitch-reuse bench-latency-protocols bench-background-latency bench-threads bench-run-budget bench-eval-budget bench-prefix-sharing setup data browser clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP) data

# Fashion-MNIST from Debian's dataset-fashion-mnist (offline, Expat), installed when missing and we may (root + apt).
data:
	@test -f $(FASHION) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; } \
	      || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped"; \
	  else \
	    echo "note: Fashion-MNIST is not installed (as root: apt-get install dataset-fashion-mnist); its tests will be skipped"; \
	  fi; }

# Debian's Chromium and its driver: the tests open report.html in a real headless browser.
browser:
	@command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Chromium (Debian packages chromium, chromium-driver) for the report tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	      || echo "warning: could not install Chromium; the browser tests of report.html will be skipped"; \
	  else \
	    echo "note: Chromium is not installed (as root: apt-get install chromium chromium-driver); its tests will be skipped"; \
	  fi; }

run: $(STAMP) data
	$(BIN)/shiftnas run --config configs/default.yaml

test: $(STAMP) data browser lint  # two test processes (one torch thread each), one test file per process
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)            # one import and formatting style (ruff); `make format` applies it
	$(BIN)/ruff check shiftnas tests bench
	$(BIN)/ruff format --check shiftnas tests bench

format: $(STAMP)
	$(BIN)/ruff check --fix shiftnas tests bench
	$(BIN)/ruff format shiftnas tests bench

bench: $(STAMP)
	$(BIN)/python bench/bench_latency_eval.py

bench-latency: $(STAMP)   # ~15 min: protocol stability, predictor vs noise ceiling, query cost
	$(BIN)/python bench/bench_latency.py

bench-ranking: $(STAMP)   # needs the Fashion-MNIST ground truth; ~2.5 CPU-h per seed, two seed processes at once (resumable)
	$(BIN)/python bench/bench_ranking.py --seeds 0,2 & pid=$$!; \
	$(BIN)/python bench/bench_ranking.py --seeds 1 && wait $$pid

bench-nat: $(STAMP)       # NAT vs NATv2 ablations on Fashion-MNIST; ~85 CPU-min per seed, two seed processes at once (resumable)
	$(BIN)/python bench/bench_nat.py --seeds 0,2 & pid=$$!; \
	$(BIN)/python bench/bench_nat.py --seeds 1 && wait $$pid

bench-scaling: $(STAMP)   # ~20 min on a quiet machine: 1 vs 2 local Dask workers scoring, and the cost model
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_scaling.py

bench-speed: $(STAMP)     # ~15 min: where an evaluation spends its time; plain vs fast evaluator vs the ofa recipe
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_eval_speed.py

bench-train-speed: $(STAMP)  # ~8 min: training steps in NCHW vs channels_last, and same-seed retraining
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_train_speed.py

bench-threads: $(STAMP)   # ~3 min on a quiet machine: 1 vs 2 torch threads, idle and beside a CPU burner
	$(BIN)/python bench/bench_threads.py

bench-run-budget: $(STAMP)   # ~90 min alone (resumable, recorded runs read back): the default run's training recipe (processes, cheaper recipes, shifts, init), 3 seeds
	$(BIN)/python bench/bench_run_budget.py

bench-latency-cost: $(STAMP)  # ~8 min on a quiet machine: one latency measurement, phase by phase, 144 architectures
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_latency_cost.py

bench-stitch-reuse: $(STAMP)  # ~2 min: stitched vs whole latency exports on ofa-resnet50 and ofa-mbv3, 10 architectures each
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_stitch_reuse.py --space ofa-resnet50 --archs 10
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_stitch_reuse.py --space ofa-mbv3 --archs 10

bench-latency-protocols: $(STAMP)  # ~15 min: six latency protocols' cost and repeat agreement, 40 architectures, idle, beside a busy and an intermittent process
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_latency_protocols.py --archs 40 --burner

bench-background-latency: $(STAMP)  # ~25 min after `make run`: the default search with latency measured here vs in a background child, idle and beside a burner
	$(BIN)/python bench/bench_background_latency.py --checkpoint runs/default/supernet.pt --burner

bench-latency-predictors: $(STAMP)  # ~4 h, alone on a quiet machine: 8 latency regimes x 400 architectures, resumable
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_latency_predictors.py

bench-eval-budget: $(STAMP)  # ~40 min: ranking vs calibration / validation images / stratified subsets, ranking bench's supernets 0 and 2 (trained if missing)
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_eval_budget.py --seed 0 --calib 128,500
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_eval_budget.py --seed 2 --calib 128,500

bench-prefix-sharing: $(STAMP)  # 1 min after `make run`: how much of a search's forward passes prefix sharing could save
	$(BIN)/python bench/bench_prefix_sharing.py

bench-transfer: $(STAMP)  # ~30 CPU-min per seed
	$(BIN)/python bench/bench_transfer.py --seeds 0,1,2

clean:
	rm -rf $(VENV) runs .pytest_cache
