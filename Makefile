# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create and reuse the project-local virtual environment .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TD := $(VENV)/bin/tinydeploy
INSTALLED := $(VENV)/.installed
DEMO := build/demo
PYTEST_ARGS ?=

.PHONY: install demo test clean

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(INSTALLED)

install: $(INSTALLED)

# The main job on the built-in digits data: optimize until the int8 model fits the
# ESP32-S3 targets, render its firmware, then build, flash and bench it on an attached
# board, or bench the virtual device (clearly labelled) when none is attached.
demo: $(INSTALLED)
	$(TD) deploy --data digits --board esp32-s3-devkitc-1 --out $(DEMO)

test: $(INSTALLED)
	$(PY) -m pytest -m "unit or host" $(PYTEST_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache
