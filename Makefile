# PUMITSlicer — two commands on a fresh machine:
#   make install   creates .venv, installs everything (CPU torch 2.13.0 first), runs the demo
#   make test      installs if needed, then runs the whole test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install deps test demo bench clean

install: deps demo

deps: $(STAMP)

$(STAMP): training/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned: a bare "torch" requirement would pull a multi-GB CUDA build
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e "training[train,dev,slicer-test]"
	touch $(STAMP)

demo: deps
	$(VENV)/bin/pumit demo -o outputs/demo

test: deps
	# UTF-8 mode: child processes (Lightning prints emoji) are decoded the same whatever the machine's locale
	PYTHONUTF8=1 $(PY) -m pytest -q training/tests Testing

bench: deps
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) outputs
