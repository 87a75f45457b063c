# Two commands a user needs: `make demo` and `make test`. Each sets up .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
# A pinned CPU-friendly torch installed before the project, so pip never pulls a CUDA build.
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin

.PHONY: demo test bench lint setup clean

$(BIN)/judge: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,lora]"
	touch $(BIN)/judge

setup: $(BIN)/judge

# The main job on the bundled example: score with the verifier and the length baseline,
# combine (verifier as a gate), keep the best rationale per prompt plus preference pairs.
demo: setup
	$(BIN)/judge score examples/math_candidates.jsonl -o runs/demo/scored.jsonl --judge verify:gsm8k --judge length --overwrite
	$(BIN)/judge rank runs/demo/scored.jsonl -o runs/demo/ranked.jsonl --method zscore --gate verify
	$(BIN)/judge best-of-n runs/demo/ranked.jsonl -o runs/demo/accepted.jsonl --require verify --pairs runs/demo/pairs.jsonl --rejected runs/demo/rejected.jsonl

test: setup
	$(BIN)/ruff check judge tests benchmarks
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs build *.egg-info
