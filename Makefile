# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create and reuse the project-local virtual environment .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TD := $(VENV)/bin/tinydeploy
INSTALLED := $(VENV)/.installed
DEMO := build/demo
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

# Debian packages the test suite uses beyond PyPI: the RV32 cross compiler, its C library
# and QEMU, for the emulated board that runs the real C-engine firmware; 32-bit host
# compilers, for the host builds of the ESP32 firmware (bench/firmware_host_check.py).
DEB_PACKAGES := gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc gcc-multilib g++-multilib
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test docs clean system-packages

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[optimize,test,power]'
	touch $(INSTALLED)

install: $(INSTALLED)

# The main job on the built-in digits data: optimize until the int8 model fits the
# ESP32-S3 targets, render its firmware, then build, flash and bench it on an attached
# board, or bench the virtual device (clearly labelled) when none is attached.
demo: $(INSTALLED)
	$(TD) deploy --data digits --board esp32-s3-devkitc-1 --out $(DEMO)

system-packages:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# Two workers (pytest-xdist): CI has two cores, and the slow tests train models for minutes.
# The modules sharing a costly fixture run each on one worker (tests/conftest.py).
test: $(INSTALLED) system-packages
	$(PY) -m pytest -m "unit or host or slow" -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The documentation's generated parts: synopses and the command table from the CLI's parser,
# and the real output of the commands it shows, run on the built-in digits data in build/docs.
docs: $(INSTALLED) system-packages
	$(PY) docs/generate.py

clean:
	rm -rf build dist *.egg-info .pytest_cache
