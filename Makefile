# coap-alarm: host commands. Every target but help bootstraps .venv itself.
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
# make keys: the client's name, and the board's network address only when given (make's own
# DEVICE default is deploy's serial port, which is no address).
export NAME KEYS_DIR
KEYS_DEVICE := $(if $(filter command line environment,$(origin DEVICE)),$(DEVICE))
export KEYS_DEVICE

.PHONY: help sim test bench deploy keys venv clean
.DEFAULT_GOAL := help

## coap-alarm: `make TARGET [OPTION=value ...]`. Each target sets up .venv/ on first use.
##
## make sim      run the real firmware on this computer, with simulated pins; Ctrl-C stops it
##                 PORT=5683        the UDP port to serve
##                 BIND=127.0.0.1   0.0.0.0: your network too (it prints the address for a phone)
##                 HEAP=64k         a board-sized heap (the firmware is precompiled to .mpy first)
##                 CONFIG=my.json   a config.json to start from (PORT and BIND still apply)
##                 FRESH=1          forget the board's files kept in .sim/PORT/ (alarm state,
##                                  OSCORE sequence numbers) and start clean
## make test     run every test; PYTEST_ARGS='-k deploy' picks some
## make deploy   put the alarm on a board running MicroPython (docs/flash-a-board.md)
##                 DEVICE=/dev/ttyUSB0  the board's serial port
##                 SSID=... PASSWORD=...  the Wi-Fi to join (none: the board opens an access point)
##                 CONFIG=my.json   start config.json from this file
##                 MPY=1            precompile to .mpy (less RAM on the board)
##                 DRY_RUN=1        only print the plan
##                 DEPLOY_ARGS='--persist --output-pin 4'  any other flag of tools/deploy.py --help
## make keys     give a client its own OSCORE key (README, Security)
##                 NAME=laptop      the client's name (a new one; REVOKE=1 takes it away)
##                 DEVICE=192.168.1.57  the board's network address for this client (make sim:
##                                  DEVICE=127.0.0.1, or 127.0.0.1:PORT on another port)
##                 CONFIG=my.json   the board config to add it to (default config.json here, then:
##                                  make deploy ... CONFIG=config.json, or make sim CONFIG=config.json)
##                 KEYS_DIR=keys    where the client's key folder goes (default keys/NAME/)
##                 REVOKE=1         remove NAME's key from the config and keys/NAME/
## make bench    throughput and latency against aiocoap and libcoap, heap, flash; BENCH_ARGS=...
## make venv     only set up .venv/
## make clean    remove .venv/ and build leftovers
## make help     this text
help:
	@sed -n 's/^## \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

$(BIN)/.ready: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(BIN)/.ready

# The real main.py under the MicroPython unix port (CPython where there is none), simulated pins.
# exec: no shell in between. On Ctrl-C the simulator lets the firmware stop and exits 0, quietly.
sim: $(BIN)/.ready
	@exec $(BIN)/python tools/sim.py --port '$(PORT)' --bind '$(BIND)' $(if $(HEAP),--heap '$(HEAP)') \
	  $(if $(CONFIG),--config "$$CONFIG") $(if $(FRESH),--fresh)

# Every host test (CPython unit tests, MicroPython VM, real CoAP peers).
test: $(BIN)/.ready
	$(BIN)/python -m pytest host_tests -q $(PYTEST_ARGS)

# Put the alarm on a board running MicroPython (docs/flash-a-board.md).
deploy: $(BIN)/.ready
	$(BIN)/python tools/deploy.py --device '$(DEVICE)' $(if $(SSID),--ssid "$$SSID") \
	  $(if $(PASSWORD),--password "$$PASSWORD") $(if $(CONFIG),--config "$$CONFIG") \
	  $(if $(MPY),--mpy) $(if $(DRY_RUN),--dry-run) $(DEPLOY_ARGS)

# A client's own OSCORE key: the board's side into the local config, the client's into keys/NAME/.
keys: $(BIN)/.ready
	$(BIN)/python tools/keys.py $(if $(REVOKE),revoke,add) --config "$${CONFIG:-config.json}" \
	  $(if $(KEYS_DIR),--keys "$$KEYS_DIR") $(if $(REVOKE),,$(if $(KEYS_DEVICE),--device "$$KEYS_DEVICE")) \
	  -- "$$NAME"

# Benchmarks: throughput vs aiocoap and libcoap, notification latency, heap, flash (< 3 min).
bench: $(BIN)/.ready
	$(BIN)/python tools/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build
