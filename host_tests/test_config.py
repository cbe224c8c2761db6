# config.json: every kind of bad configuration is reported and replaced by its default,
# on CPython (unit) and on the real firmware under MicroPython (it still serves CoAP).
import json
import os
import socket
import subprocess
import threading

import pytest

from firmware import config
from host import coapmsg as coap
from harness import FirmwareProcess, tool, ROOT


def check(raw):
    said = []
    cfg = config.validate(raw, said.append)
    return cfg, said


def test_missing_file_means_defaults_and_says_so(tmp_path):
    said = []
    cfg = config.load(str(tmp_path / "config.json"), said.append)
    assert cfg == config.DEFAULTS
    assert said == ["config: no %s; using defaults" % (tmp_path / "config.json")]


def test_every_default_passes_its_own_schema():
    cfg, said = check(dict(config.DEFAULTS))
    assert said == [] and cfg == config.DEFAULTS
    assert set(config.SCHEMA) == set(config.DEFAULTS) | set(config.OSCORE_DEFAULTS)
    # The OSCORE limits: in the config with a context only, and then with their defaults.
    cfg, said = check({"oscore": [{"name": "a", "secret": "00" * 16, "sender_id": "", "recipient_id": "01"}]})
    assert said == [] and {k: cfg[k] for k in config.OSCORE_DEFAULTS} == config.OSCORE_DEFAULTS


def test_a_good_file_is_taken_as_is(tmp_path):
    raw = {"wifi_ssid": "home", "wifi_password": "secret123", "hostname": "siren", "port": 5700,
           "output_pin": 4, "output_active_high": False, "input_pin": 35, "input_pull": None,
           "input_debounce_ms": 20, "max_observers": 4, "log_level": "debug", "persist": True,
           "watchdog_s": 0}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(raw))
    said = []
    cfg = config.load(str(p), said.append)
    assert said == []
    for k, v in raw.items():
        assert cfg[k] == v


@pytest.mark.parametrize("text, why", [
    ('{"port": 5683,', "is not valid JSON"),
    ("", "is not valid JSON"),
    (b"\xff\xfe{}", "is not valid JSON"),
])
def test_malformed_file_is_reported_and_defaults_used(tmp_path, text, why):
    p = tmp_path / "config.json"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    said = []
    assert config.load(str(p), said.append) == config.DEFAULTS
    assert len(said) == 1 and why in said[0] and "using defaults" in said[0]


def test_a_json_list_is_not_a_config():
    cfg, said = check([1, 2])
    assert cfg == config.DEFAULTS and said == ["config: expected a JSON object, got list; using defaults"]


# -- a damaged config.json falls back to the last good one (issue 10, finding 8) -----------

def test_a_good_config_is_kept_and_only_rewritten_when_it_changed(tmp_path, monkeypatch):
    p = tmp_path / "config.json"
    last = tmp_path / "config.last.json"
    p.write_text('{"port": 5700}')
    assert config.load(str(p), print)["port"] == 5700
    assert last.read_text() == '{"port": 5700}'
    writes = []
    real_save = config.save
    monkeypatch.setattr(config, "save", lambda path, data: (writes.append(path), real_save(path, data)))
    config.load(str(p), print)
    assert writes == []                 # unchanged: the flash is spared
    p.write_text('{"port": 5701}')
    config.load(str(p), print)
    assert writes == [str(last)] and last.read_text() == '{"port": 5701}'
    assert sorted(os.listdir(tmp_path)) == ["config.json", "config.last.json"]  # nothing unfinished


@pytest.mark.parametrize("damage", [b'{"port": 5700, "ap_pass', b"", b"\xff\xfe{}", b"[1, 2]"])
def test_a_damaged_config_falls_back_to_the_last_good_one(tmp_path, damage):
    p = tmp_path / "config.json"
    p.write_text('{"port": 5700, "ap_password": "my own passphrase"}')
    config.load(str(p), print)
    p.write_bytes(damage)
    said = []
    cfg = config.load(str(p), said.append)
    assert cfg["port"] == 5700 and cfg["ap_password"] == "my own passphrase"
    assert len(said) == 1 and said[0].endswith("; using the last good config, %s" % (tmp_path / "config.last.json"))
    # The damaged file does not replace the good copy.
    assert json.loads((tmp_path / "config.last.json").read_text())["port"] == 5700


def test_a_damaged_config_without_a_good_copy_means_defaults(tmp_path):
    p = tmp_path / "config.json"
    p.write_text('{"port": 57')
    said = []
    assert config.load(str(p), said.append) == config.DEFAULTS
    assert len(said) == 1 and "is not valid JSON" in said[0] and said[0].endswith("; using defaults")


def test_a_full_flash_cannot_keep_the_copy_but_the_board_boots(tmp_path, monkeypatch):
    import errno

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(config, "save", full)
    p = tmp_path / "config.json"
    p.write_text('{"port": 5700}')
    said = []
    assert config.load(str(p), said.append)["port"] == 5700
    assert len(said) == 1 and said[0].startswith("config: cannot keep a copy of it in ")


def test_the_ap_password_is_a_wpa2_passphrase():
    assert check({"ap_password": "x" * 63})[0]["ap_password"] == "x" * 63
    for bad in ("x" * 64, "short", 12345678):
        cfg, said = check({"ap_password": bad})
        assert cfg["ap_password"] == "" and len(said) == 1 and "8 to 63 characters" in said[0]


@pytest.mark.parametrize("key, value", [
    ("output_pin", 20),      # no GPIO20 on an ESP32
    ("output_pin", 99),
    ("output_pin", 6),       # wired to the SPI flash
    ("output_pin", 36),      # input only
    ("input_pin", 40),
    ("port", 0),
    ("port", 70000),
    ("port", "5683"),        # a string where a number belongs
    ("port", 5683.0),
    ("port", True),          # JSON true is no port number
    ("input_debounce_ms", "fast"),
    ("max_observers", 0),
    ("persist", "yes"),
    ("output_active_high", 1),
    ("log_level", "verbose"),
    ("input_pull", "sideways"),
    ("wifi_password", "short"),
    ("wifi_ssid", "x" * 33),
    ("hostname", ""),
    ("watchdog_s", 2),
])
def test_each_bad_value_is_named_and_only_it_falls_back(key, value):
    other = "log_level" if key != "log_level" else "port"
    good = {"log_level": "debug", "port": 6000}[other]
    cfg, said = check({key: value, other: good})
    assert cfg[key] == config.DEFAULTS[key]
    assert cfg[other] == good
    assert len(said) == 1
    # JSON spelling, as in config.json: "yes", false, null.
    assert said[0].startswith("config: %s = %s is not " % (key, json.dumps(value)))
    assert said[0].endswith("using default %s" % json.dumps(config.DEFAULTS[key]))


def test_unknown_key_is_reported_not_silently_dropped():
    cfg, said = check({"wifi_pasword": "typo1234"})
    assert said == ['config: unknown key "wifi_pasword" ignored']
    assert cfg == config.DEFAULTS


def test_messages_spell_values_as_json():
    _, said = check({"persist": "yes", "input_pull": 1, "rd_host": 5})
    assert said == ['config: persist = "yes" is not true or false; using default false',
                    'config: input_pull = 1 is not "up", "down" or null; using default "up"',
                    'config: rd_host = 5 is not an IP address or host name, or empty; using default ""']


@pytest.mark.parametrize("key", ["output_pin", "input_pin"])
@pytest.mark.parametrize("pin, name", [(1, "transmit"), (3, "receive")])
def test_the_serial_link_pins_are_refused_with_the_reason(key, pin, name):
    cfg, said = check({key: pin})
    assert cfg[key] == config.DEFAULTS[key]
    assert said == ["config: %s = %d is UART0 %s, the serial link of the REPL and deploy: using it "
                    "cuts that link; using default %d" % (key, pin, name, config.DEFAULTS[key])]


@pytest.mark.parametrize("raw, warning", [
    ({"output_pin": 12}, "output_pin 12 is a strapping pin: held high at reset, the flash gets 1.8 V "
                         "and the board does not boot"),
    ({"input_pin": 12}, "input_pin 12 is a strapping pin: held high at reset, the flash gets 1.8 V"),
    ({"output_pin": 15}, "output_pin 15 is a strapping pin: held low at reset, the boot messages are silenced"),
    ({"output_pin": 5}, "output_pin 5 is a strapping pin: held low at reset, it changes the SDIO timing"),
    ({"output_pin": 0, "input_pin": None}, "output_pin 0 is a strapping pin: held low at reset, the board "
                                           "starts its bootloader instead of the alarm"),
    ({"input_pin": 2, "output_pin": 4}, "input_pin 2 is a strapping pin: held high at reset, the board cannot be flashed"),
])
def test_strapping_pins_are_kept_with_a_warning_naming_the_risk(raw, warning):
    cfg, said = check(raw)
    assert all(cfg[k] == v for k, v in raw.items())
    assert len(said) == 1 and said[0].startswith("config: warning: " + warning)
    assert said[0].endswith("; mind what it is wired to")


def test_the_devkit_led_and_button_and_plain_pins_get_no_warning():
    for raw in ({"output_pin": 2, "input_pin": 0}, {"output_pin": 4, "input_pin": 13},
                {"output_pin": 25, "input_pin": 35, "input_pull": None}):
        assert check(raw)[1] == []


def test_input_on_the_output_pin_is_disabled():
    cfg, said = check({"output_pin": 4, "input_pin": 4})
    assert cfg["input_pin"] is None and cfg["output_pin"] == 4
    assert said == ["config: input_pin 4 is also the output_pin; input disabled"]


def test_pull_on_an_input_only_pin_is_dropped():
    cfg, said = check({"input_pin": 34, "input_pull": "up"})
    assert cfg["input_pin"] == 34 and cfg["input_pull"] is None
    assert len(said) == 1 and "GPIO34 has no internal pull resistor" in said[0]


def test_config_module_compiles_and_validates_under_micropython(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"port": "x", "output_pin": 20, "persist": True}))
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from firmware import config\n"
            "c = config.load(%r)\n"
            "print('RESULT', c['port'], c['output_pin'], c['persist'])\n") % (ROOT, str(p))
    out = subprocess.run([tool("micropython"), "-c", code], capture_output=True, text=True,
                         timeout=20).stdout
    assert 'config: port = "x" is not an integer from 1 to 65535; using default 5683' in out
    assert "config: output_pin = 20 is not an ESP32 GPIO" in out
    assert "RESULT 5683 2 True" in out


def test_last_good_config_and_the_board_password_under_micropython(tmp_path):
    # The board's side of finding 8 on the MicroPython VM (os.urandom, bytes, the rename).
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"port": 5700}))
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from firmware import config\n"
            "a = config.load(%r, print, True)['ap_password']\n"
            "b = config.load(%r, print, True)['ap_password']\n"
            "open(%r, 'w').write('{\"port\": 57')\n"
            "c = config.load(%r, print, True)\n"
            "print('RESULT', a == b, len(a), c['port'], c['ap_password'] == a)\n") % (
        ROOT, str(p), str(p), str(p), str(p))
    r = subprocess.run([tool("micropython"), "-c", code], capture_output=True, text=True, timeout=20)
    assert "RESULT True 19 5700 True" in r.stdout, r.stdout + r.stderr
    assert "using the last good config, %s" % (tmp_path / "config.last.json") in r.stdout
    password = (tmp_path / "ap_password.txt").read_text().strip()
    assert r.stdout.count("the access point's password is %s" % password) == 3
    assert sorted(os.listdir(tmp_path)) == ["ap_password.txt", "config.json", "config.last.json"]


# -- the real firmware, booted under MicroPython with a bad config ----------------------------

def test_firmware_with_bad_values_reports_them_and_serves(firmware):
    fw = firmware(output_pin=20, input_debounce_ms="fast", max_observers=-1, log_level=3,
                  colour="red")
    out = "".join(fw.output)
    assert "config: output_pin = 20 is not an ESP32 GPIO" in out
    assert 'config: input_debounce_ms = "fast" is not an integer' in out
    assert "config: max_observers = -1 is not" in out
    assert "config: log_level = 3 is not one of" in out
    assert 'config: unknown key "colour" ignored' in out
    c = fw.client()
    assert c.request(coap.PUT, payload=b"ON").code == coap.CHANGED
    fw.wait_for("output GPIO2 = 1")  # the default output pin took over
    assert fw.alive()
    c.close()


class RawConfigFirmware(FirmwareProcess):
    """main.py with a config file that is not valid JSON: it must boot on the defaults."""

    def __init__(self, workdir, raw):
        super().__init__(workdir, {})
        self.raw = raw
        self.port = config.DEFAULTS["port"]

    def start(self, timeout=10):
        path = os.path.join(self.workdir, "config.json")
        with open(path, "wb") as f:
            f.write(self.raw)
        env = dict(os.environ, COAP_ALARM_CONFIG=path)
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     bufsize=1, errors="replace")
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait_for("serving coap://", timeout)
        return self


def default_port_free():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("0.0.0.0", config.DEFAULTS["port"]))
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.mark.parametrize("raw", [b'{"port": 6001, "output_pin": 4', b"\xff\xfe not text"])
def test_firmware_with_malformed_file_boots_on_defaults(tmp_path, raw):
    free = default_port_free()
    fw = RawConfigFirmware(tmp_path, raw)
    try:
        fw.start()
        out = "".join(fw.output)
        assert "is not valid JSON" in out and "using defaults" in out
        assert "serving coap://127.0.0.1:5683/alarm" in out
        if free:  # someone else's simulator on 5683 would answer instead of ours
            c = fw.client()
            assert c.request(coap.PUT, payload=b"ON").code == coap.CHANGED
            fw.wait_for("output GPIO2 = 1")
            c.close()
        assert fw.alive()
    finally:
        fw.stop()


def test_validator_is_dropped_after_boot_under_micropython(tmp_path):
    # Its RAM must come back: neither sys.modules nor the package may keep it.
    code = ("import sys, gc; sys.path.insert(0, %r)\n"
            "import firmware\n"
            "from firmware import start\n"
            "cfg = start.load_config(%r)\n"
            "print('LEFT', 'firmware.config' in sys.modules, hasattr(firmware, 'config'), cfg['port'])\n"
            ) % (ROOT, str(tmp_path / "none.json"))
    out = subprocess.run([tool("micropython"), "-c", code], capture_output=True, text=True,
                         timeout=20).stdout
    assert "LEFT False False 5683" in out


def readme_config_table():
    """The README's Configuration table: {key: its default as written there}."""
    import re
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("\n## Configuration\n"):]
    section = section[:section.index("\n## ", 1)]
    table = {}
    for keys, defaults in re.findall(r"^\| (`[^|]*) \| ([^|]*) \|", section, re.M):
        names = re.findall(r"`(\w+)`", keys)
        values = re.findall(r"`([^`]+)`", defaults)
        if len(values) == 1:           # `""` for wifi_ssid, wifi_password
            values *= len(names)
        assert len(values) == len(names), (keys, defaults)
        table.update(zip(names, values))
    return table


def test_the_readme_lists_every_key_with_its_default():
    # The one place the keys are listed (the other docs link to it): all of them, with the
    # default the firmware really has, written as in config.json.
    table = readme_config_table()
    defaults = dict(config.DEFAULTS, **config.OSCORE_DEFAULTS)   # the latter: with a context only
    assert sorted(table) == sorted(defaults), "README, Configuration: keys differ from DEFAULTS"
    wrong = {}
    for key, written in table.items():
        try:
            ok = json.loads(written) == defaults[key]
        except ValueError:
            ok = False
        if not ok:
            wrong[key] = (written, json.dumps(defaults[key]))
    assert not wrong, "README, Configuration: default as written vs the firmware's: %s" % wrong


def test_no_other_doc_repeats_the_keys_table():
    import glob
    import re
    for path in sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
        with open(path) as f:
            rows = re.findall(r"^\| `(\w+)`", f.read(), re.M)
        repeated = [k for k in rows if k in config.DEFAULTS]
        assert not repeated, "%s lists config keys %s: link to README.md#configuration instead" % (
            os.path.relpath(path, ROOT), repeated)


def test_a_file_too_big_or_too_deep_for_the_board_still_boots(tmp_path, monkeypatch):
    p = tmp_path / "config.json"
    p.write_text('{"port": 6000}')

    def no_memory(*a):
        raise MemoryError("memory allocation failed")
    monkeypatch.setattr(config.json, "loads", no_memory)
    said = []
    assert config.load(str(p), said.append) == config.DEFAULTS
    assert said == ["config: cannot read %s (MemoryError('memory allocation failed')); using defaults" % p]


def test_a_file_too_big_to_read_still_boots(tmp_path, monkeypatch):
    import builtins
    p = tmp_path / "config.json"
    p.write_text("{}")
    real_open = builtins.open

    class Huge:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self):
            raise MemoryError()

    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: Huge() if path == str(p) else real_open(path, *a, **k))
    said = []
    assert config.load(str(p), said.append) == config.DEFAULTS
    assert said == ["config: %s is too big to read; using defaults" % p]


def test_a_port_without_os_urandom_still_makes_a_password(tmp_path, monkeypatch, capsys):
    monkeypatch.delattr(config.os, "urandom")
    p = tmp_path / "config.json"
    p.write_text("{}")
    a = config.load(str(p), print, True)["ap_password"]
    (tmp_path / "ap_password.txt").unlink()
    b = config.load(str(p), print, True)["ap_password"]
    assert len(a) == 19 and a != b   # random.getrandbits: a new one each time it is made
