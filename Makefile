# Sketch Search for QGIS: set-up, tests, demo, benchmarks, packaging.
# Every target runs scripts/setup.sh first; it is idempotent and takes about a second once done.
PY := .venv/bin/python
SHARED ?= ../shared
export SKETCH_SEARCH_DATA ?= $(SHARED)/data

.PHONY: setup demo test test-slow bench train package screenshot clean

setup:
	@bash scripts/setup.sh

demo: setup   ## the main job on the default model and the sample data
	@bash scripts/demo.sh

test: setup   ## every test (engine without QGIS, plugin in a real offscreen QGIS)
	@QT_QPA_PLATFORM=offscreen $(PY) -m pytest

test-slow: setup   ## the long checks as well
	@QT_QPA_PLATFORM=offscreen $(PY) -m pytest -m "slow or not slow"

bench: setup
	@$(PY) -m benchmarks.model_speed

clean:
	rm -rf build dist .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
