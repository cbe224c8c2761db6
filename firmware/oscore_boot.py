# OSCORE at boot only: the contexts from the config, their sequence numbers from the sequence
# file, and the protection layer put in front of the site. start.py frees this module (and the key
# derivation, oscore_keys.py) after make(): none of it is needed once the keys exist.
from firmware import log, oscore


def make(app, cfg, folder=""):
    """The contexts from the validated config, their sequence numbers from `folder` + protect.FILE
    (next to config.json), and the protection layer in front of the site (app.endpoint.handler).
    Then this module and the key derivation are freed. Returns the layer."""
    import json
    from binascii import hexlify, unhexlify as u
    contexts = []
    for c in cfg["oscore"]:
        ctx = oscore.SecurityContext(u(c["secret"]), u(c["sender_id"]), u(c["recipient_id"]),
                                     u(c.get("salt", "")),
                                     replay=oscore.ReplayWindow(cfg["oscore_window"]))
        contexts.append(ctx)   # its name is for the log below only: not kept (RAM)
    import firmware
    import gc
    firmware.unload("oscore_keys")   # the keys are derived: the derivation goes before the layer comes
    gc.collect()
    from firmware import protect
    store = protect.Sequences(folder + protect.FILE, contexts)
    # The sequence file, {"<Sequences.name()>": a number no message under that context used yet},
    # and its temporary file, which a write cut short may have left: the larger of the two counts.
    # No file: a first boot, or new keys, nothing was sent under them yet. A damaged file (or only
    # a damaged temporary one) says nothing of what was used: refuse new numbers.
    data = {}
    found = [0, 0]   # each of the two: 0 not there, 1 read, 2 damaged
    for k in (0, 1):
        try:
            with open(store.path + (".tmp" if k else "")) as f:
                got = json.loads(f.read())
            for n in got.values():
                if not isinstance(n, int) or n < 0:
                    raise ValueError("not a count: %r" % (n,))
        except OSError:
            continue
        except Exception as e:
            found[k] = 2
            why = e
            continue
        found[k] = 1
        for name in got:
            if got[name] > data.get(name, 0):
                data[name] = got[name]
    if found[0] == 2 or found == [0, 2]:
        log.error("oscore: %s is damaged (%r): answers that need a new sequence number are "
                  "refused until it is removed together with every client's keys", store.path, why)
        data = {}
        store.broken = True
    step = cfg["oscore_seq_step"]
    for c in contexts:
        # (a file of an earlier version names a context by its Recipient ID: as good a floor)
        n = max(data.get(store.name(c), 0), data.get(hexlify(c.recipient_id).decode(), 0))
        c.sequence = oscore.SenderSequence(n, step)
    log.info("oscore: %d client(s) (%s); unprotected requests: %s", len(contexts),
             ", ".join(c["name"] for c in cfg["oscore"]), cfg["unprotected"])
    layer = protect.Protect(app.endpoint, app.observe, contexts,
                            ("all", "read", "none").index(cfg["unprotected"]), store)
    firmware.unload("oscore_boot")
    return layer
