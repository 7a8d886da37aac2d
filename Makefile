# botguard — developer entry points. `make help` lists them.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: help install demo test lint bench model clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@# An editable install leaves botguard's own modules uncompiled, and a PYTHONDONTWRITEBYTECODE
	@# environment never caches them: every run would compile them again (30 ms of start-up).
	$(BIN)/python -m compileall -q botguard > /dev/null
	touch $(STAMP)

install: $(STAMP) ## create .venv and install botguard (editable) with dev extras

DEMO_DATA := botguard-out/.ranges

demo: $(STAMP) ## analyze the bundled fixture shop log (loading its crawler/cloud ranges) and show the decisions
	BOTGUARD_DATA=$(DEMO_DATA) $(BIN)/botguard ranges update --from fixtures/shop/ranges > /dev/null
	BOTGUARD_DATA=$(DEMO_DATA) $(BIN)/botguard analyze fixtures/shop/access.log -c configs/demo.yaml --out botguard-out --force-color
	@echo "Outputs in botguard-out/ (blocklist.txt, decisions.jsonl, summary.json, report.html)"
	@echo "Try: $(BIN)/botguard explain <client> --from botguard-out"

test: $(STAMP) ## run the test suite
	$(BIN)/pytest

lint: $(STAMP) ## ruff + mypy
	$(BIN)/ruff check botguard tests bench
	$(BIN)/mypy botguard

bench: $(STAMP) ## benchmarks: throughput and peak memory vs peers (writes bench/results.md)
	$(BIN)/python bench/run.py

model: $(STAMP) ## retrain the packaged default model from simulated traffic (fixed seeds)
	$(BIN)/python -m botguard.model.build

clean: ## remove build and run outputs
	rm -rf botguard-out build *.egg-info .pytest_cache .mypy_cache .ruff_cache
