# Fresh-machine entry points (see README). Everything runs inside .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
WORKDIR ?= runs/vp_digits

.PHONY: setup demo test clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Test-only dependencies (pytest, diffusers as the reference), kept out of `make setup`.
$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

setup: $(VENV)/.installed

test: $(VENV)/.installed-test
	$(PY) -m pytest -q tests

# Train the embedded default (vp_digits, ~5 min on 2 CPU cores), sample from it, evaluate it.
demo: setup
	$(PY) run.py --config vp_digits --workdir $(WORKDIR) --mode train
	$(PY) run.py --config vp_digits --workdir $(WORKDIR) --mode sample
	$(PY) run.py --config vp_digits --workdir $(WORKDIR) --mode eval

clean:
	rm -rf $(VENV) .pytest_cache
