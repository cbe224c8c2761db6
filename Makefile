# coap-alarm: host commands. Every target bootstraps .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 5683
BIND   ?= 127.0.0.1
HEAP   ?=

.PHONY: sim test bench deploy venv clean

$(BIN)/.ready: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(BIN)/.ready

## Run the real main.py under the MicroPython unix port, with simulated pins.
sim: $(BIN)/.ready
	$(BIN)/python tools/sim.py --port $(PORT) --bind $(BIND) $(if $(HEAP),--heap $(HEAP))

## Run every host test (CPython unit tests, MicroPython VM, real CoAP peers).
test: $(BIN)/.ready
	$(BIN)/python -m pytest host_tests -q $(PYTEST_ARGS)

## Benchmarks: throughput vs aiocoap and libcoap, notification latency, heap, flash (< 3 min).
bench: $(BIN)/.ready
	$(BIN)/python tools/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build
