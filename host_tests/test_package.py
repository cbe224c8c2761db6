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


def test_mip_install_of_package_json_gives_a_board_that_serves(tmp_path):
    # The same thing `mpremote mip install --target / github:OWNER/REPO` does, from this checkout.
    import subprocess
    from host import coapmsg as coap
    from harness import free_udp_port, tool
    from vboard import BoardProcess, VirtualBoard
    board = VirtualBoard(tmp_path)
    fw = None
    try:
        r = subprocess.run([tool("mpremote"), "connect", board.device, "resume", "mip", "install",
                            "--target", ".", os.path.join(ROOT, "package.json")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        port = free_udp_port()
        with open(os.path.join(board.fs, "config.json"), "w") as f:
            json.dump({"port": port, "bind": "127.0.0.1"}, f)
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
