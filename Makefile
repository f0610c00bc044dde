# Two commands do all set-up on a fresh machine:
#   make demo   - install, then run the pipeline end to end on the embedded scene world
#   make test   - install, then run the tests
# torch: the CPU build by default (TORCH_SPEC); on a CUDA machine see README "Installing torch".

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# DeepSpeed picks its accelerator at import; without CUDA it must be the CPU one.
export DS_ACCELERATOR ?= $(shell nvidia-smi >/dev/null 2>&1 && echo cuda || echo cpu)
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: install browser demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/rlhfv demo --config configs/demo_tiny.yaml

# The correction page's tests drive a real browser: Debian's Chromium and its driver (root installs
# them; elsewhere ask your admin for `chromium` and `chromium-driver`).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver \
	    >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium chromium-driver >/dev/null; }; }

test: install browser
	$(BIN)/python -m pytest -q --durations=15 tests

bench: install
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python benchmarks/sft_throughput.py
	$(BIN)/python benchmarks/serve_throughput.py
	$(BIN)/python benchmarks/serve_fault.py
	$(BIN)/python benchmarks/pipeline_throughput.py
	$(BIN)/python benchmarks/ddpo_throughput.py

clean:
	rm -rf runs .pytest_cache
