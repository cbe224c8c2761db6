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

from harness import GROUP, FirmwareProcess, free_udp_port, _multicast_sender  # noqa: E402


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
