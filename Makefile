# Sketch Search for QGIS: set-up, tests, demo, benchmarks, packaging.
# Every target runs scripts/setup.sh first; it is idempotent and takes about a second once done.
PY := .venv/bin/python
SHARED ?= ../shared
export SKETCH_SEARCH_DATA ?= $(SHARED)/data

.PHONY: setup demo test test-slow bench train package screenshot clean

setup:
	@bash scripts/setup.sh

demo:   ## the main job on the default model and the sample data
	@bash scripts/demo.sh

test:   ## every test (engine without QGIS, plugin in a real offscreen QGIS)
	@bash scripts/test.sh

test-slow:   ## the long checks as well (full evaluations, large rasters)
	@bash scripts/test.sh -m "slow or not slow"

bench: setup   ## speed figures: model throughput vs matmul peak, search cold/warm, memory
	@$(PY) -m benchmarks.model_speed
	@$(PY) -m benchmarks.search_speed

train: setup   ## train the default model (background-friendly; logs under runs/)
	@bash scripts/train_default.sh

package: setup   ## the installable plugin zip, checked
	@bash scripts/package.sh

screenshot: setup   ## PNGs of the dock and a result layer, for the README
	@bash scripts/screenshot.sh

clean:
	rm -rf build dist .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
