# Quick start: `make run` (set up + run on embedded defaults), `make test` (set up + run tests).
# VENV can point elsewhere (CI caches one outside the clone).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.hazardwatch-deps-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.hazardwatch-deps-*
	touch $@

# The editable install is re-pointed at this checkout every time (cheap, no dependencies).
install: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .

# The main job on embedded defaults: SQLite in ./data, a local video file, CLIP ViT-B/32
# (downloaded to ~/.cache/clip on first use; offline, pass MODEL=/path/to/weights.pt).
VIDEO ?= data/demo.mp4
MODEL ?= ViT-B/32

data/demo.mp4:
	$(BIN)/python scripts/demo_video.py $@

run: install $(VIDEO)
	CAMERA_PASSWORD=example $(BIN)/hazardwatch config check --config config/hazardwatch.example.yaml > /dev/null
	$(BIN)/hazardwatch migrate
	$(BIN)/hazardwatch run --source $(VIDEO) --model $(MODEL)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
