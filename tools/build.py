"""The board build: which files go onto a board, and the one way they are compiled to .mpy.

Everything that puts firmware somewhere (tools/deploy.py, tools/sim.py, the test harness,
tools/bench.py) takes the file list and the compile step from here, so the build a board
runs is byte for byte the build the tests measured. package.json is checked against it.

The board package is firmware/ (every .py in it), plus boot.py and main.py at the top.
Host-only code (host/: CoAP numbers and Message for tests and tools, the CPython half of
compat, the simulated pins) is never part of it.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run by name at power-up: they stay source on the board.
TOP = ("boot.py", "main.py")
# What the simulator adds on top of the board files (simulated pins and console), and what the
# probes run on that build need (OSCORE's client side, a socket that sends nowhere).
SIM_EXTRAS = ("host/__init__.py", "host/simpins.py", "host/console.py", "host/oscore_client.py",
              "host/probe_socket.py")


def board_files(root=ROOT):
    """Repository-relative paths of every file a board gets, in a stable order."""
    out = list(TOP)
    base = os.path.join(root, "firmware")
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        for name in sorted(filenames):
            if name.endswith(".py"):
                out.append(rel + "/" + name)
    return out


def mpy_flags(rel):
    """The mpy-cross flags for one file: the same everywhere.

    -s: the module's own name as source name, a qstr it has anyway (RAM).
    -X no-source-lines: no line-number tables; tracebacks keep function names (RAM).
    """
    name = os.path.basename(rel)[:-3]
    return ["-s", name, "-X", "no-source-lines"]


def compile_file(mpy_cross, rel, dest_dir, root=ROOT):
    """Compile one repository-relative .py to dest_dir/<rel>.mpy; return the output path.
    Raises subprocess.CalledProcessError (with stderr) when mpy-cross refuses it."""
    out = os.path.join(dest_dir, rel[:-3] + ".mpy")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    subprocess.run([mpy_cross] + mpy_flags(rel) + ["-o", out, os.path.join(root, rel)],
                   check=True, capture_output=True, text=True)
    return out


def board_path(rel):
    """Where rel lands on a board built with .mpy: firmware/x.py -> firmware/x.mpy."""
    return rel if rel in TOP else rel[:-3] + ".mpy"


def build(dest, mpy_cross, extras=(), root=ROOT):
    """The board tree under dest: firmware/ as .mpy, boot.py and main.py as source, and any
    extras (compiled too). Returns dest."""
    import shutil
    for rel in board_files(root) + list(extras):
        if rel in TOP:
            shutil.copy(os.path.join(root, rel), os.path.join(dest, rel))
        else:
            compile_file(mpy_cross, rel, dest, root)
    return dest


def package_json(root=ROOT):
    """The text of package.json (for `mpremote mip install`): the board files, the version."""
    sys.path.insert(0, root)
    try:
        from firmware import VERSION
    finally:
        sys.path.remove(root)
    pkg = {"urls": [[rel, rel] for rel in board_files(root)], "deps": [], "version": VERSION}
    text = json.dumps(pkg, indent=2)
    # One [target, url] pair per line, as people write it.
    text = text.replace('[\n      "', '["').replace('",\n      "', '", "').replace('"\n    ]', '"]')
    return text + "\n"


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="The board build (see the module's docstring).")
    ap.add_argument("--list", action="store_true", help="print the board files, one a line")
    ap.add_argument("--package-json", action="store_true",
                    help="rewrite package.json from the board file list")
    args = ap.parse_args(argv)
    if args.package_json:
        with open(os.path.join(ROOT, "package.json"), "w") as f:
            f.write(package_json())
        print("build: wrote package.json (%d files)" % len(board_files()))
    if args.list or not args.package_json:
        print("\n".join(board_files()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
