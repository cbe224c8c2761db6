# coap-alarm: host commands. Every target bootstraps .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 5683
BIND   ?= 127.0.0.1
HEAP   ?=
# The board's serial port for `make deploy`. PORT is the simulator's UDP port, but
# `make deploy PORT=/dev/ttyUSB0` works too: a PORT that is a path is taken as the device.
DEVICE ?= $(if $(findstring /,$(PORT)),$(PORT),/dev/ttyUSB0)
# Passed to the recipe through the environment, taken literally: quotes and $ in a password
# can break neither make nor the shell.
override SSID := $(value SSID)
override PASSWORD := $(value PASSWORD)
export SSID PASSWORD CONFIG

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

## Put the alarm on a board running MicroPython (docs/flash-a-board.md):
##   make deploy DEVICE=/dev/ttyUSB0 [SSID=home PASSWORD='...'] [CONFIG=my.json] [MPY=1] [DRY_RUN=1]
##              [DEPLOY_ARGS='--persist --output-pin 4 ...']   (python tools/deploy.py --help)
deploy: $(BIN)/.ready
	$(BIN)/python tools/deploy.py --device '$(DEVICE)' $(if $(SSID),--ssid "$$SSID") \
	  $(if $(PASSWORD),--password "$$PASSWORD") $(if $(CONFIG),--config "$$CONFIG") \
	  $(if $(MPY),--mpy) $(if $(DRY_RUN),--dry-run) $(DEPLOY_ARGS)

## Benchmarks: throughput vs aiocoap and libcoap, notification latency, heap, flash (< 3 min).
bench: $(BIN)/.ready
	$(BIN)/python tools/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build
