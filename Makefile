# openpi-ros: `make test` and `make demo` each set up everything they need on a fresh clone (idempotent).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k images -x"`.
PYTEST_ARGS ?=
# Test workers (pytest-xdist; whole files per worker, so module fixtures are built once). 0: one process.
PYTEST_WORKERS ?= 2

.PHONY: setup test lint format demo demo-loop demo-synthetic lock colcon clean

setup:
	@bash scripts/setup.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint docker/*.Dockerfile

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# ALOHA sim + policy node + chunk executor, one short episode (CHECKPOINT=<folder> runs a real pi0_aloha_sim one).
demo: setup
	$(PY) -m openpi_ros.sim_eval --demo $(DEMO_ARGS)

# The whole loop without hardware: record in the ALOHA sim, convert, norm stats, train a tiny model, serve, run it.
demo-loop: setup
	$(PY) -m openpi_ros.loop_demo --mapping examples/aloha_mapping.yaml --out loop_out/$$(date +%Y%m%d-%H%M%S) $(DEMO_ARGS)

# The synthetic-robot wiring demo (no simulator).
demo-synthetic: setup
	$(PY) -m openpi_ros.demo $(DEMO_ARGS)

# Regenerate requirements/lock.txt after changing requirements/pins.txt.
lock: setup
	$(PY) scripts/lock.py

# Build ros2_ws/ with colcon, as on a robot with a distro ROS 2 (source ros2_ws/install/setup.bash afterwards).
colcon: setup
	cd ros2_ws && AMENT_PREFIX_PATH=$(CURDIR)/$(VENV) ../$(VENV)/bin/colcon build --symlink-install

clean:
	rm -rf build ros2_ws/build ros2_ws/install ros2_ws/log .pytest_cache .ruff_cache
