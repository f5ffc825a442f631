# Two commands do all the set-up on a fresh machine:
#   make demo   — create .venv, install firepbt, run the example experiment (PBT on the noisy
#                 quadratic model, local worker processes + SQLite), print its result and write
#                 its HTML report
#   make test   — create .venv, install firepbt with its test dependencies, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.firepbt-installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch 2.13.0 is a CPU build (a newer or unpinned torch pulls a multi-GB CUDA build)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev,plot,ray,examples]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	run=runs/nqm-pbt-$$(date +%Y%m%d-%H%M%S) && \
	$(VENV)/bin/firepbt run examples/nqm_pbt.toml --run-dir $$run && \
	$(VENV)/bin/firepbt report $$run

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs
