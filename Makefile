# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create and reuse the project-local virtual environment .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test clean

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(INSTALLED)

install: $(INSTALLED)

demo: $(INSTALLED)
	$(PY) examples/digits_model.py build/demo/model.tflite
	$(VENV)/bin/tinydeploy inspect build/demo/model.tflite --board esp32-s3-devkitc-1

test: $(INSTALLED)
	$(PY) -m pytest -m "unit or host" $(PYTEST_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache
