# Fresh-machine entry points (see README). Everything runs inside .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
WORKDIR ?= runs/vp_digits

.PHONY: setup demo test bench-deps peer-consistency clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Test-only dependencies (pytest, diffusers as the reference), kept out of `make setup`.
$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

# Benchmark-only dependencies (k-diffusion's samplers as the reference, matplotlib), kept out of
# `make setup`. --no-deps: requirements-bench.txt is the whole pinned closure, without the
# training dependencies k-diffusion declares but its samplers never import.
$(VENV)/.installed-bench: requirements-bench.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps -r requirements-bench.txt
	touch $@

# The framework itself, editable (pyproject.toml): importable from anywhere with .venv's python.
# compat mode puts the checkout on sys.path (a .pth), so every top-level package is found as it
# is here; no build isolation: setuptools comes with the venv, so nothing is downloaded.
$(VENV)/.installed-package: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $@

setup: $(VENV)/.installed-package

test: setup $(VENV)/.installed-test $(VENV)/.installed-bench
	$(PY) -m pytest -q -n 2 --dist loadfile tests

bench-deps: $(VENV)/.installed-bench

# The PyPI package `consistency` for benchmarks/consistency_digits.py's peer row, in its own
# environment: its diffusers 0.20.2 cannot share .venv's (requirements-peer-consistency.txt).
PEER_CONSISTENCY ?= .venv-consistency
$(PEER_CONSISTENCY)/.installed: requirements-peer-consistency.txt
	$(PYTHON) -m venv $(PEER_CONSISTENCY)
	$(PEER_CONSISTENCY)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_CONSISTENCY)/bin/python -m pip install --quiet -r requirements-peer-consistency.txt
	touch $@

peer-consistency: $(PEER_CONSISTENCY)/.installed

# Train the embedded default (vp_digits, ~5 min on 2 CPU cores), sample from it, evaluate it.
demo: setup
	$(PY) run.py --config vp_digits --workdir $(WORKDIR) --mode train
	$(PY) run.py --config vp_digits --workdir $(WORKDIR) --mode sample
	$(PY) run.py --config vp_digits --workdir $(WORKDIR) --mode eval

clean:
	rm -rf $(VENV) $(PEER_CONSISTENCY) .pytest_cache
