# The alarm state survives a reboot: written on change only, atomically, restored at boot.
import json
import os

from host import coapmsg as coap
from firmware.persist import Store


def store(tmp_path):
    return Store(str(tmp_path / "alarm_state.json"))


def test_state_round_trips(tmp_path):
    s = store(tmp_path)
    s.save(True)
    assert store(tmp_path).load() is True
    s.save(False)
    assert store(tmp_path).load() is False
    assert os.listdir(tmp_path) == ["alarm_state.json"]  # no temporary file left behind


def test_unchanged_state_is_not_written_again(tmp_path):
    s = store(tmp_path)
    s.save(True)
    os.remove(s.path)
    s.save(True)          # same state: the flash is spared
    assert not os.path.exists(s.path)
    s.save(False)
    assert os.path.exists(s.path)


def test_loaded_state_counts_as_written(tmp_path):
    store(tmp_path).save(True)
    s = store(tmp_path)
    assert s.load() is True
    os.remove(s.path)
    s.save(True)
    assert not os.path.exists(s.path)


def test_no_file_starts_off(tmp_path, capsys):
    assert store(tmp_path).load() is False
    assert "no saved state yet; alarm starts OFF" in capsys.readouterr().out


def test_leftover_temporary_file_is_ignored_and_removed(tmp_path, capsys):
    # A power cut between writing the temporary file and the rename.
    s = store(tmp_path)
    s.save(True)
    with open(s.file, "w") as f:
        f.write('{"on": fal')
    assert store(tmp_path).load() is True
    assert not os.path.exists(s.file)
    assert "removed the unfinished" in capsys.readouterr().out


def test_corrupt_file_falls_back_to_off_with_a_message(tmp_path, capsys):
    for text in ('{"on": tr', "", "[]", '{"on": "yes"}', '{"state": 1}', "\x00\x00"):
        with open(str(tmp_path / "alarm_state.json"), "w") as f:
            f.write(text)
        assert store(tmp_path).load() is False, text
        assert "is corrupt" in capsys.readouterr().out


def test_write_failure_is_logged_not_raised(tmp_path, capsys):
    s = Store(str(tmp_path / "missing-dir" / "alarm_state.json"))
    s.save(True)
    assert "cannot save the state" in capsys.readouterr().out
    assert s.value is None  # so the next change tries again


def test_firmware_restores_persisted_state_after_a_restart(firmware):
    fw = firmware(persist=True)
    assert "no saved state yet" in "".join(fw.output)
    c = fw.client()
    assert c.request(coap.PUT, payload=b"ON").code == coap.CHANGED
    fw.wait_for("output GPIO2 = 1")
    c.close()
    fw.stop()
    again = firmware(persist=True, port=fw.port)
    out = "".join(again.output)
    # The pin is driven ON before the server announces itself.
    assert out.index("output GPIO2 = 1") < out.index("serving coap://")
    assert "restored alarm ON" in out
    c = again.client()
    assert c.request(coap.GET).payload == b"ON"
    c.close()


def test_firmware_with_corrupt_state_boots_off_and_serves(firmware, tmp_path):
    (tmp_path / "alarm_state.json").write_text('{"on": tr')
    (tmp_path / "alarm_state.json.tmp").write_text("garbage")
    fw = firmware(persist=True)
    out = "".join(fw.output)
    assert "is corrupt" in out and "alarm starts OFF" in out
    c = fw.client()
    assert c.request(coap.GET).payload == b"OFF"
    c.close()


def test_without_persist_nothing_is_written(firmware, tmp_path):
    fw = firmware()
    c = fw.client()
    assert c.request(coap.PUT, payload=b"ON").code == coap.CHANGED
    fw.wait_for("output GPIO2 = 1")
    c.close()
    assert not (tmp_path / "alarm_state.json").exists()


def test_on_a_filesystem_that_cannot_rename_over_a_file(tmp_path, monkeypatch):
    # FAT refuses to rename onto an existing name: the old file is removed first.
    real_rename = os.rename

    def fat_rename(src, dst):
        if os.path.exists(dst):
            raise OSError(17, "EEXIST")
        real_rename(src, dst)

    s = store(tmp_path)
    s.save(True)
    monkeypatch.setattr(os, "rename", fat_rename)
    s.save(False)
    assert store(tmp_path).load() is False
    assert os.listdir(tmp_path) == ["alarm_state.json"]


def test_unreadable_bytes_fall_back_to_off(tmp_path, capsys):
    (tmp_path / "alarm_state.json").write_bytes(b"\xff\xfe\x00garbage")
    assert store(tmp_path).load() is False
    assert "is corrupt" in capsys.readouterr().out


# -- faults are reported on /health, not only on the console (issue 10, finding 9) ----------

def test_store_reports_what_went_wrong_until_a_save_works(tmp_path, monkeypatch):
    import builtins
    import errno
    s = store(tmp_path)
    assert s.load() is False and s.error == "missing at boot"
    s.save(True)
    assert s.error is None
    real_open = builtins.open

    class Full:
        def __init__(self, *a):
            self.f = real_open(*a)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builtins, "open", Full)
    s.save(False)
    assert s.error == "save failed"
    monkeypatch.setattr(builtins, "open", real_open)
    assert store(tmp_path).load() is True  # the file still holds the older state
    s.save(False)
    assert s.error is None and store(tmp_path).load() is False
    (tmp_path / "alarm_state.json").write_text('{"on": tr')
    d = store(tmp_path)
    d.load()
    assert d.error == "damaged at boot"


def test_put_on_a_full_filesystem_is_answered_and_health_says_the_save_failed(tmp_path, monkeypatch):
    # The state file holds OFF, then the flash fills up: PUT ON is applied and answered 2.04,
    # but it cannot be written. /health tells whoever watches the board, not only the console.
    import builtins
    import errno
    from harness import PEER, ask_whole, full_server, request
    server, alarm, sock, clock, health = full_server()
    s = store(tmp_path)
    s.save(False)
    s = store(tmp_path)
    assert s.load() is False
    health.store = s                   # wired as start.main() does with "persist": true
    alarm.listeners.append(s.save)
    real_open = builtins.open

    def full(path, mode="r", *a, **kw):
        if "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **kw)

    def ask(*args, **kw):   # the whole answer, block-wise beyond 3x the request (RFC 7252 11.3)
        return ask_whole(server, sock, request(*args, **kw), PEER)

    assert json.loads(ask(coap.GET, "health", mid=1).payload)["store"] == "ok"
    monkeypatch.setattr(builtins, "open", full)
    r = ask(coap.PUT, payload=b"ON", mid=2)
    assert r.code == coap.CHANGED and r.payload == b"ON"
    monkeypatch.setattr(builtins, "open", real_open)
    assert json.loads(ask(coap.GET, "health", mid=3).payload)["store"] == "save failed"
    assert store(tmp_path).load() is False   # what a restart would find


def health(c, mid_token=b"\x07"):
    r = c.whole(coap.GET, "health", token=mid_token)   # all its blocks, as a client reads it
    assert r.code == coap.CONTENT
    return json.loads(r.payload)


def test_health_reports_a_damaged_state_file_found_at_boot(firmware, tmp_path):
    (tmp_path / "alarm_state.json").write_text('{"on": tr')
    fw = firmware(persist=True)
    c = fw.client()
    assert health(c)["store"] == "damaged at boot"
    assert c.request(coap.PUT, payload=b"ON").code == coap.CHANGED
    fw.wait_for("output GPIO2 = 1")
    assert health(c, b"\x08")["store"] == "ok"   # a save worked: the file is good again
    c.close()


def test_health_store_is_off_without_persist(firmware):
    fw = firmware()
    c = fw.client()
    assert health(c)["store"] == "off"
    c.close()
