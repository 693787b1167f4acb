# The two commands a newcomer needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp
DEBIAN_PACKAGES := libegl1 libgl1-mesa-dri
# the browser tests of the web app (tests/test_web.py) drive Debian's Chromium
TEST_DEBIAN_PACKAGES := chromium
export SELFSWAP_HOME ?= $(HOME)/.cache/selfswap

.PHONY: install demo test test-all lint format bench clean debian debian-test

install: $(STAMP) debian
	@$(BIN)/selfswap models pull --quiet

debian-test:
	@$(MAKE) --no-print-directory debian DEBIAN_PACKAGES="$(TEST_DEBIAN_PACKAGES)"

debian:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: install
	$(BIN)/selfswap demo --output out/demo.png

test: install debian-test
	$(BIN)/python -m pytest -q

test-all: install debian-test
	$(BIN)/python -m pytest -q -m ''

lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format:
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
