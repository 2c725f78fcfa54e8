# Two commands do everything on a fresh machine (see README):
#   make demo   -- set up .venv and run the ROS 2 demo on the embedded default (CPU, tiny checkpoint)
#   make test   -- set up .venv and run the test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-gpu bench-cpu-full clean

setup:
	FLASH_RT_VENV=$(VENV) bash scripts/setup_env.sh

demo: setup
	$(VENV)/bin/flash-rt-demo

test: setup
	$(PY) -m pytest -m "not gpu and not slow" -q $(PYTEST_ARGS)

# on a CUDA machine (the device tool runs this on an H100)
test-gpu:
	python3 -m pytest -m gpu -q $(PYTEST_ARGS)

# full-size random-weight Pi0.5 on the CPU (~14 GB RAM, minutes)
bench-cpu-full: setup
	$(PY) benchmarks/full_size_cpu.py

clean:
	rm -rf build $(VENV) .pytest_cache
