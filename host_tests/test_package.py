# package.json (for `mpremote mip install`) must list exactly what a board needs.
import json
import os
import sys

from firmware import VERSION
from harness import ROOT


def load():
    with open(os.path.join(ROOT, "package.json")) as f:
        return json.load(f)


def board_build():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import build
    return build


def test_lists_exactly_the_board_files():
    # The one list (tools/build.py) decides; host-only code (host/) is never in it.
    build = board_build()
    targets = [t for t, _ in load()["urls"]]
    assert targets == build.board_files(), \
        "package.json is stale: run `python tools/build.py --package-json`"
    assert not any(t.startswith("host/") for t in targets)


def test_package_json_is_what_build_writes():
    with open(os.path.join(ROOT, "package.json")) as f:
        assert f.read() == board_build().package_json(), \
            "package.json is stale: run `python tools/build.py --package-json`"


def test_urls_are_relative_to_the_repository_and_exist():
    # Relative URLs resolve against package.json's own location, whatever the repo is called.
    for target, url in load()["urls"]:
        assert url == target and os.path.isfile(os.path.join(ROOT, url))


def test_version_matches_the_firmware():
    assert load()["version"] == VERSION


def documented(pattern):
    """Each command the README and the flash guide show that matches pattern."""
    import re
    found = []
    for doc in ("README.md", os.path.join("docs", "flash-a-board.md")):
        with open(os.path.join(ROOT, doc)) as f:
            found += re.findall(pattern, f.read())
    return found


MIP = r"\S*mpremote connect /dev/ttyUSB0 mip install [^`\n]*"
CP_CONFIG = r"\S*mpremote connect /dev/ttyUSB0 cp my-config.json :config.json"


def on_the_virtual_board(command, device):
    # As written, with the board's port. And `resume`: mpremote soft-resets a board before its
    # first command; a board restarts its REPL, the unix port ends (a board never needs this).
    import shlex
    from harness import tool
    argv = shlex.split(command)
    assert argv[1:3] == ["connect", "/dev/ttyUSB0"], command
    return [tool("mpremote"), "connect", device, "resume"] + argv[3:]


def test_the_docs_show_the_mip_install_and_the_config_copy():
    assert len(set(documented(MIP))) == 1 and documented(CP_CONFIG)


def test_the_documented_mip_install_gives_a_board_that_serves(tmp_path):
    # Run in this checkout, as the docs say; then the config copy the flash guide shows.
    import subprocess
    from host import coapmsg as coap
    from harness import free_udp_port
    from vboard import BoardProcess, VirtualBoard
    mip, = set(documented(MIP))
    board = VirtualBoard(tmp_path, root=True)   # its "/" is board.fs, as an ESP32's is its flash
    fw = None
    try:
        r = subprocess.run(on_the_virtual_board(mip, board.device), cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        installed = sorted(os.path.relpath(os.path.join(d, f), board.fs).replace(os.sep, "/")
                           for d, _, files in os.walk(board.fs) for f in files
                           if not d.startswith(os.path.join(board.fs, "host")))
        assert installed == sorted(board_build().board_files())   # no config.json, no .mpy
        port = free_udp_port()
        user = tmp_path / "user"
        user.mkdir()
        (user / "my-config.json").write_text(json.dumps({"port": port, "bind": "127.0.0.1"}))
        r = subprocess.run(on_the_virtual_board(documented(CP_CONFIG)[0], board.device), cwd=user,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        fw = BoardProcess(board.fs, port).start()
        c = fw.client()
        assert c.request(coap.GET).payload == b"OFF"
        c.close()
    finally:
        if fw:
            fw.stop()
        board.close()


def test_the_regenerate_command_writes_this_package_json(tmp_path):
    # `python tools/build.py --package-json`, run in a copy of the checkout.
    import shutil
    import subprocess
    for rel in ("tools/build.py", "boot.py", "main.py"):
        os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
        shutil.copy(os.path.join(ROOT, rel), tmp_path / rel)
    shutil.copytree(os.path.join(ROOT, "firmware"), tmp_path / "firmware",
                    ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "tools/build.py", "--package-json"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("build: wrote package.json (%d files)" % len(board_build().board_files()))
    with open(os.path.join(ROOT, "package.json")) as a:
        assert (tmp_path / "package.json").read_text() == a.read()
