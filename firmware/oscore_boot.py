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
    # The sequence file: {"<recipient_id hex>": a number no message under that context used yet}.
    try:
        with open(store.path) as f:
            data = json.loads(f.read())
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except OSError:
        data = {}         # a first boot (or new keys): nothing was sent under them yet
    except Exception as e:
        log.error("oscore: %s is damaged (%r): answers that need a new sequence number are "
                  "refused until it is removed together with every client's keys", store.path, e)
        data = {}
        store.broken = True
    step = cfg["oscore_seq_step"]
    for c in contexts:
        n = data.get(hexlify(c.recipient_id).decode(), 0)
        c.sequence = oscore.SenderSequence(n if isinstance(n, int) and n > 0 else 0, step)
    log.info("oscore: %d client(s) (%s); unprotected requests: %s", len(contexts),
             ", ".join(c["name"] for c in cfg["oscore"]), cfg["unprotected"])
    layer = protect.Protect(app.endpoint, app.observe, contexts,
                            ("all", "read", "none").index(cfg["unprotected"]), store)
    firmware.unload("oscore_boot")
    return layer
