# P4ContainerFlow Kit: the front door. Run as root on Debian 12/13 (elsewhere: README "Other systems").
#   make demo   set up everything, run the main experiment headless, results under results/
#   make test   check types and lint first (make lint), set up everything, run the whole test suite
.PHONY: setup system test-system criu python p4lang controllers images p4 demo lint test doctor clean-lab bench

PY      := .venv/bin/python
P4CF    := .venv/bin/p4cf
PYTEST  := .venv/bin/pytest

setup: system criu python p4lang

system:
	@bash scripts/setup-system.sh

criu: system
	@bash scripts/setup-criu.sh

python: system
	@bash scripts/setup-python.sh

# BMv2 and p4c (optional, BMv2 target): from p4lang tarballs in P4CF_P4LANG_DIR, else says how.
p4lang: system
	@bash scripts/setup-p4lang.sh

controllers: system
	@bash scripts/setup-controllers.sh

images: setup
	@$(P4CF) images build

p4:
	@$(P4CF) p4 compile

doctor: setup
	@$(P4CF) doctor

demo: setup images
	@$(P4CF) demo

test-system:
	@bash scripts/setup-system.sh --test

# ruff and mypy (strict; settings in pyproject.toml), before the long set-up: a type error or
# lint finding fails `make test` (and so CI) within seconds.
lint: python
	@.venv/bin/ruff check p4cf_kit tests benchmarks
	@.venv/bin/mypy

test: lint setup test-system controllers images
	@$(PYTEST) -ra --tb=native tests

bench: setup images
	@for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean-lab:
	@$(P4CF) down
