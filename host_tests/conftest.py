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

import socket  # noqa: E402

from harness import GROUP, FLOOD_TEST, FirmwareProcess, background_flood, free_udp_port, tool  # noqa: E402
from harness import _multicast_sender  # noqa: E402


def _flood_tools_missing():
    try:
        tool("micropython")
        tool("mpy-cross")
    except BaseException:   # pytest's skip, outside a test
        return True
    return False


def pytest_collection_modifyitems(session, config, items):
    # The flood's own tests go last: they wait for its 5 minutes, while everything else runs
    # meanwhile (in file order they would hold the suite up in the middle).
    items.sort(key=lambda item: item.nodeid.split("::")[0].endswith(FLOOD_TEST))


def pytest_collection_finish(session):
    # The 5-minute flood starts as soon as the tests are collected (after -k and the like have
    # chosen them), when its test is among them: it runs in the background of the whole suite.
    if any(item.nodeid.split("::")[0].endswith(FLOOD_TEST) for item in session.items):
        if not _flood_tools_missing():
            background_flood()


def pytest_sessionfinish(session):
    flood = background_flood(start=False)
    if flood is not None:
        flood.stop()   # an interrupted or failed run: the flood does not outlive it


@pytest.fixture(scope="session")
def mixed_flood():
    """The figures of the background flood (tools/flood.py), once it is over."""
    tool("micropython")   # skips, naming the tool, where it is missing
    tool("mpy-cross")
    return background_flood().result()


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


@pytest.fixture
def loopback_multicast():
    """Skip, saying why, when this kernel does not loop multicast back on 127.0.0.1."""
    port = free_udp_port()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = None
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.bind((GROUP, port))
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                      socket.inet_aton(GROUP) + socket.inet_aton("127.0.0.1"))
        tx = _multicast_sender()
        tx.sendto(b"probe", (GROUP, port))
        rx.settimeout(1.0)
        rx.recvfrom(16)
    except OSError as e:
        pytest.skip("this kernel does not deliver multicast on loopback (%s)" % e)
    finally:
        rx.close()
        if tx is not None:
            tx.close()
