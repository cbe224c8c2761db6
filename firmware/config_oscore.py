# OSCORE's part of config.validate (which calls it only when "oscore" or "unprotected" is set, and
# frees this module again): the limits that matter only with a context, each context alone
# (fields, hex, lengths) and against the others (names, recipient IDs, how many), and the policy
# for unprotected requests. A bad context is reported and left out; the others are kept.
import json


def validate(cfg, report, limits):
    """Check cfg["oscore"] (already a list) and cfg["unprotected"] in place; each problem is
    reported (report(message)). limits: config.OSCORE_DEFAULTS, merged in with a context."""
    if cfg["oscore"]:
        for key in limits:
            if key not in cfg:
                cfg[key] = limits[key]
        cfg["oscore"] = _contexts(cfg["oscore"], cfg["oscore_max_contexts"], report)
    if cfg["oscore"]:
        if cfg["unprotected"] is None:
            cfg["unprotected"] = "read"
    elif cfg["unprotected"] not in (None, "all"):
        report("config: unprotected = %s needs an oscore context; without one every request is "
               "unprotected (\"all\"): using default null" % json.dumps(cfg["unprotected"]))
        cfg["unprotected"] = None


def _contexts(contexts, most, report):
    """The good contexts of the list, at most `most`; each bad one reported."""
    import binascii
    name, secret, salt, sender, recipient = "name secret salt sender_id recipient_id".split()
    good = []
    for n, c in enumerate(contexts):
        where = "config: oscore[%d]" % n
        if isinstance(c, dict) and isinstance(c.get(name), str) and c[name]:
            where = "config: oscore[%d] (%s)" % (n, json.dumps(c[name]))
        why = None
        if not isinstance(c, dict):
            why = "is not an object"
        else:
            ids = {}
            for f in c:
                if f not in (name, secret, salt, sender, recipient):
                    why = "has an unknown field %s (known: %s, %s, %s, %s, %s)" % (
                        json.dumps(f), name, secret, salt, sender, recipient)
                    break
            for f in (name, secret, sender, recipient):
                if why is None and f not in c:
                    why = "lacks the field %s" % f
            if why is None and not (isinstance(c[name], str) and 0 < len(c[name]) <= 32):
                why = "%s is not a non-empty string of at most 32 characters" % name
            for f in (secret, salt, sender, recipient):
                if why is not None or f not in c:
                    continue
                v = c[f]
                try:
                    v = binascii.unhexlify(v) if isinstance(v, str) and len(v) % 2 == 0 else None
                except ValueError:
                    v = None
                if v is None:
                    why = "%s = %s is not hex (an even number of 0-9, a-f)" % (f, json.dumps(c[f]))
                elif f == secret and not 16 <= len(v) <= 64:
                    why = "%s is %d bytes; it must be 16 to 64 (32 hex digits or more)" % (f, len(v))
                elif f == salt and len(v) > 64:
                    why = "%s is %d bytes; at most 64" % (f, len(v))
                elif f in (sender, recipient) and len(v) > 7:
                    why = "%s is %d bytes; OSCORE IDs are at most 7 (14 hex digits)" % (f, len(v))
                ids[f] = v
            if why is None and ids[sender] == ids[recipient]:
                why = "%s and %s are equal; they must differ" % (sender, recipient)
            for g in good:
                if why is None and g[name] == c[name]:
                    why = "has the same %s as another context" % name
                elif why is None and binascii.unhexlify(g[recipient]) == ids[recipient]:
                    why = "has the same %s as %s: each client needs its own" % (
                        recipient, json.dumps(g[name]))
                elif why is None and (binascii.unhexlify(g[secret]), binascii.unhexlify(g.get(salt, "")),
                                      binascii.unhexlify(g[sender])) == (ids[secret], ids.get(salt, b""),
                                                                         ids[sender]):
                    # The board's sender key and nonces would be those of the other context, each
                    # counting on its own: the same nonce twice under one key.
                    why = "has the same %s, %s and %s as %s: each client needs its own %s" % (
                        secret, salt, sender, json.dumps(g[name]), secret)
            if why is None and len(good) == most:
                why = "is one more than oscore_max_contexts = %d" % len(good)
        if why is None:
            good.append(c)
        else:
            report("%s %s; context left out" % (where, why))
    return good
