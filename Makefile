# One entry point per job; every target uses the project's own virtualenv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

DATA ?= data/synthetic
RUN ?= runs/demo
INDEX ?= indexes/demo
HOST ?= 127.0.0.1
PORT ?= 8000
FAISS ?= cpu
DEMO_MINUTES ?= 6

.PHONY: install lock lint test test-milvus-server demo data contact-sheet train index serve bench accuracy \
	browser clean device-wheels docs docs-serve

# Every install is one lock (locks/, docs/getting-started.md "Installing"): the virtualenv becomes exactly
# locks/requirements-$(FAISS)-py3XX.txt, hash-checked, with no resolver step, then the project is added
# editable. Idempotent: the stamp (one per FAISS flavour) changes only when a lock or
# pyproject.toml does. Switching flavours removes the other FAISS wheel (both ship faiss/).
install: $(VENV)/.installed-$(FAISS)
$(VENV)/.installed-$(FAISS): pyproject.toml $(wildcard locks/*.txt locks/*.py)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m locks.sync $(FAISS)
	rm -f $(VENV)/.installed $(VENV)/.installed-*
	touch $@

# After any change to pyproject.toml's dependencies: re-resolve all four locks (only what the
# change needs moves; UPGRADE=1 moves everything to the newest allowed), then commit them.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m locks.compile $(if $(UPGRADE),--upgrade)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# One test process per core (pytest-xdist; TEST_WORKERS=0: one process). Files stay whole on
# one worker (their module fixtures are made once); the expensive session builds are shared
# by all workers (conftest.py).
TEST_WORKERS ?= auto
# The fault tests on the real Milvus standalone server (a SIGKILL and restart of the server under
# two replicas; two hosts racing one id) mostly wait on the server, so they run beside the main
# suite in a process of their own, their report after its. Both must pass.
SERVER_FAULT_TESTS = api_tests/scaleout/test_milvus_restart_http.py \
	api_tests/scaleout/test_two_hosts_id_race_http.py
SERVER_FAULT_LOG = $(VENV)/server-fault-tests.log

test: lint
	# Passive OpenMP threads: the API tests run a server and a client on the same 2 cores.
	@OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -n 0 -p no:cacheprovider \
		$(SERVER_FAULT_TESTS) > $(SERVER_FAULT_LOG) 2>&1 & faults=$$!; \
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 \
		--no-loadscope-reorder -m "not milvus_server"; main=$$?; \
	wait $$faults; faulted=$$?; \
	echo "--- the fault tests on the real Milvus server ($(SERVER_FAULT_LOG)):"; \
	tail -n 40 $(SERVER_FAULT_LOG); \
	test $$main -eq 0 && test $$faulted -eq 0

# Every test on the real Milvus standalone server (started on free 127.0.0.1 ports by a fixture
# and stopped after): the fault tests above, the store contract, recovery from a released
# collection and a restart, a replica's SIGKILL. About 10 minutes on 2 cores.
test-milvus-server: install
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/pytest -q -m milvus_server

data: install
	test -f $(DATA)/reid_raw.json || \
		$(PY) -m training.synthetic --out $(DATA) --ids 1500 --images-per-id 2 --seed 0 \
			--val-fraction 0.05 --test-fraction 0.1

contact-sheet: data
	$(PY) -m training.synthetic.contact_sheet --root $(DATA) --out $(DATA)/contact_sheet.png

train: data
	$(PY) -m training train --config configs/tiny-synthetic.yaml --root $(DATA) --out $(RUN) \
		--max-minutes $(DEMO_MINUTES)

index: install
	rm -rf $(INDEX)
	$(PY) -m index build --bundle $(RUN)/bundle --dataset cuhk-pedes --root $(DATA) \
		--split test --out $(INDEX)

# The local demo: reads open to anyone on this machine (TPS_OPEN_READS, honoured on a loopback
# HOST only; the server refuses it elsewhere), uploads and the audit trail with the admin key.
serve: install
	@echo "Reads are OPEN to anyone on this machine (TPS_OPEN_READS=true on $(HOST)); uploads, deletes and /v1/audit need the key '$${TPS_API_KEY:-demo-key}'."
	TPS_BUNDLE=$(RUN)/bundle TPS_INDEX_DIR=$(INDEX) TPS_API_KEY=$${TPS_API_KEY:-demo-key} \
		TPS_OPEN_READS=true $(PY) -m service --host $(HOST) --port $(PORT)

demo: contact-sheet train index
	@echo "Search page: http://$(HOST):$(PORT)/  (gallery uploads use the API key 'demo-key')"
	$(MAKE) serve

bench: install
	$(PY) -m bench.train_throughput --out out/bench
	$(PY) -m bench.index --quick --out out/bench
	$(PY) -m bench.service --quick --out out/bench
	$(PY) -m bench.encoders --quick --out out/bench
	$(PY) -m bench.store --quick --out out/bench

accuracy: install
	$(PY) -m bench.accuracy --ablation --out out/bench

# The documentation site (mkdocs.yml, docs/): strict, so a broken link or anchor, or a page left
# out of the nav, fails the build; `make test` builds it too (tests/docs/).
DOCS_ADDR ?= 127.0.0.1:8008
export NO_MKDOCS_2_WARNING := 1
docs: install
	$(VENV)/bin/mkdocs build --strict

docs-serve: install
	$(VENV)/bin/mkdocs serve --strict --dev-addr $(DOCS_ADDR)

# Wheels for bench/device_check.sh on a GPU machine's Python 3.12 (that machine has no registry):
# the packages it lacks, at locks/requirements-cpu-py312.txt's versions and hashes.
DEVICE_PACKAGES := $(shell grep -v '^\#' bench/device_wheels.txt)
DEVICE_PLATFORMS := $(foreach p,manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 \
	manylinux1,--platform $(p)_x86_64)
device-wheels: install
	mkdir -p .whl
	$(PY) -m locks.select cpu-py312 $(DEVICE_PACKAGES) > .whl/requirements.txt
	$(PY) -m pip download -q --no-deps --require-hashes --only-binary=:all: --python-version 3.12 \
		--implementation cp $(DEVICE_PLATFORMS) -d .whl -r .whl/requirements.txt

# Debian's Chromium for the browser test (Playwright drives the system binary).
browser:
	test -x /usr/bin/chromium || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

clean:
	rm -rf out site .pytest_cache .ruff_cache   # runs/ and indexes/ hold trained work: remove by hand

# Reliability at full size (CI runs the same tests small, in `make test`). Each prints its
# figures as JSON and writes them to $(RELIABILITY_OUT); docs/deploying.md "Reliability" explains them.
FUZZ_EXAMPLES ?= 300
FUZZ_SECONDS ?= 300
CRASH_TRIALS ?= 20
SOAK_SECONDS ?= 300
RELIABILITY_OUT ?= out/reliability
.PHONY: fuzz crash-test soak

fuzz: install
	TPS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) TPS_FUZZ_SECONDS=$(FUZZ_SECONDS) \
		TPS_RELIABILITY_OUT=$(RELIABILITY_OUT) \
		$(VENV)/bin/pytest -q -s api_tests/reliability/test_fuzz.py

crash-test: install
	TPS_CRASH_TRIALS=$(CRASH_TRIALS) TPS_CLI_CRASH_TRIALS=$(CRASH_TRIALS) \
		TPS_RELIABILITY_OUT=$(RELIABILITY_OUT) $(VENV)/bin/pytest -q -s \
		api_tests/reliability/test_crash_http.py tests/reliability/test_index_cli_crash.py \
		tests/index/faiss/test_crash.py

soak: install
	$(PY) -m bench.soak --duration $(SOAK_SECONDS) --out $(RELIABILITY_OUT)

# Containers (docker/). DEVICE=cpu|cuda picks the image and, for cuda, the GPU compose override;
# ARGS replaces a job's default command line (see docker/compose.yaml), e.g. ARGS="--epochs 1".
DEVICE ?= cpu
DOCKER_IMAGE ?= person-search
NPROC_PER_NODE ?= 1
ARGS ?=
DOCKER_DIRS := data weights runs bundles indexes uploads keys audit
COMPOSE := PERSON_SEARCH_IMAGE=$(DOCKER_IMAGE) HOST_UID=$$(id -u) HOST_GID=$$(id -g) \
	docker compose -f docker/compose.yaml $(if $(filter cuda,$(DEVICE)),-f docker/compose.gpu.yaml)

.PHONY: docker-build docker-train docker-index docker-serve

docker-build:
	@case "$(DEVICE)" in cpu|cuda) ;; *) echo "DEVICE must be cpu or cuda" >&2; exit 2;; esac
	docker build -f docker/Dockerfile --build-arg DEVICE=$(DEVICE) -t $(DOCKER_IMAGE):$(DEVICE) .

# Host folders exist before the bind mounts, so docker does not create them owned by root.
docker-train:
	mkdir -p $(DOCKER_DIRS)
	NPROC_PER_NODE=$(NPROC_PER_NODE) $(COMPOSE) run --rm train $(ARGS)

docker-index:
	mkdir -p $(DOCKER_DIRS)
	$(COMPOSE) run --rm index $(ARGS)

docker-serve:
	mkdir -p $(DOCKER_DIRS)
	$(COMPOSE) up -d --wait api
	@echo "Search page: http://127.0.0.1:$${API_PORT:-8000}/  (log: docker logs -f person-search-api-1)"
