# Shared fixtures: the repository on sys.path, the firmware under the MicroPython VM, a CoAP client.
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from harness import FirmwareProcess  # noqa: E402


@pytest.fixture
def firmware(tmp_path):
    """Factory: start main.py under `micropython` with a config; stopped after the test."""
    procs = []

    def start(heap=None, interpreter="micropython", precompiled=None, **config):
        p = FirmwareProcess(tmp_path, config, heap=heap, interpreter=interpreter, precompiled=precompiled)
        procs.append(p)
        p.start()
        return p

    yield start
    for p in procs:
        p.stop()
