PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/jaxscd: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(BIN)/jaxscd

demo: $(BIN)/jaxscd
	$(BIN)/jaxscd distill quote_close
	$(BIN)/jaxscd distill bracket_depth --out out/bracket_depth
	$(BIN)/jaxscd verify out/bracket_depth

# two processes: one pytest process of the whole suite crashed twice inside XLA (SIGSEGV in a compile near the end,
# after thousands of jitted programs; vm.max_map_count is 65,530 here)
test: $(BIN)/jaxscd
	$(BIN)/python -m pytest -q tests/test_[a-l]*.py
	$(BIN)/python -m pytest -q tests/test_[m-z]*.py

bench: $(BIN)/jaxscd
	$(BIN)/python experiments/bench_filter.py

clean:
	rm -rf $(VENV) build *.egg-info
