# Quick start: `make run` (set up + run on embedded defaults), `make test` (set up + run tests).
# VENV can point elsewhere (CI caches one outside the clone).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# The environment is keyed by what defines it: the dependencies and their pinned versions.
DEPS_HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.hazardwatch-deps-$(DEPS_HASH)

.PHONY: install run test lint docs bench clean constraints

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.hazardwatch-deps-*
	touch $@

# Pin what the environment holds now (after a change to pyproject.toml and a `make install`).
constraints: install
	{ sed -n '/^#/p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt

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

# The documentation site in site/; --strict: a broken link or anchor is an error.
docs: install
	$(BIN)/mkdocs build --strict --quiet
