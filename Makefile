# P4ContainerFlow Kit: the front door. Run as root on Debian 12/13 (elsewhere: README "Other systems").
#   make demo   set up everything, run the main experiment headless, results under results/
#   make test   set up everything and run the whole test suite
.PHONY: setup system test-system criu python images p4 demo test doctor clean-lab bench

PY      := .venv/bin/python
P4CF    := .venv/bin/p4cf
PYTEST  := .venv/bin/pytest

setup: system criu python

system:
	@bash scripts/setup-system.sh

criu: system
	@bash scripts/setup-criu.sh

python: system
	@bash scripts/setup-python.sh

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

test: setup test-system images
	@$(PYTEST) -ra tests

bench: setup images
	@for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean-lab:
	@$(P4CF) down
