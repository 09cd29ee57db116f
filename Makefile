# Two commands do everything: `make run` (set up + the default NAS run) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench bench-latency bench-ranking bench-nat bench-transfer setup clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/shiftnas run --config configs/default.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/bench_latency_eval.py

bench-latency: $(STAMP)   # ~15 min: protocol stability, predictor vs noise ceiling, query cost
	$(BIN)/python bench/bench_latency.py

bench-ranking: $(STAMP)   # needs the ground-truth table; ~35 CPU-min per seed, two seed processes at once
	$(BIN)/python bench/bench_ranking.py --seeds 0,2 & pid=$$!; \
	$(BIN)/python bench/bench_ranking.py --seeds 1 && wait $$pid

bench-nat: $(STAMP)       # NAT vs NATv2 ablations; ~70 CPU-min per seed, two seed processes at once (resumable)
	$(BIN)/python bench/bench_nat.py --seeds 0,2 & pid=$$!; \
	$(BIN)/python bench/bench_nat.py --seeds 1 && wait $$pid

bench-transfer: $(STAMP)  # ~30 CPU-min per seed
	$(BIN)/python bench/bench_transfer.py --seeds 0,1,2

clean:
	rm -rf $(VENV) runs .pytest_cache
