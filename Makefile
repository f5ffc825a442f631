# Two commands do all the set-up on a fresh machine:
#   make demo   — create .venv, install firepbt, run the example experiment (FIRE PBT on MNIST-1D,
#                 local worker processes + SQLite), replay the schedule it found, write its HTML
#                 report and print the result table
#   make test   — create .venv, install firepbt with its test dependencies, run the test suite
#   make docs   — build the documentation site into docs/_build/html (warnings are errors)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.firepbt-installed

.PHONY: demo test docs install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch 2.13.0 is a CPU build (a newer or unpinned torch pulls a multi-GB CUDA build)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev,docs,plot,ray,examples,bench,logging,lightning,huggingface,s3]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	run=runs/mnist1d-fire-$$(date +%Y%m%d-%H%M%S) && \
	$(VENV)/bin/firepbt run examples/mnist1d_fire.toml --run-dir $$run && \
	$(VENV)/bin/firepbt replay $$run --seeds 1 && \
	$(VENV)/bin/firepbt report $$run

test: $(STAMP)
	$(PY) -m pytest

# -W: a warning (a broken link or cross-reference, a docstring that does not parse) fails it
docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -n -q -b html docs docs/_build/html
	@echo "docs/_build/html/index.html"

clean:
	rm -rf $(VENV) runs docs/_build
