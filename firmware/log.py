# Console logging with a level; prints only, so it works the same on host and board.
_threshold = 20   # debug 10, info 20, warning 30, error 40


def set_level(name):
    global _threshold
    names = ("debug", "info", "warning", "error")
    _threshold = names.index(name) * 10 + 10 if name in names else 20


def _out(level, msg, args):
    # One prefix string, not four: every distinct short string is an interned name (RAM).
    print("DIWE"[level] + " " + (msg % args if args else msg))


def debug(msg, *args):
    if _threshold <= 10:
        _out(0, msg, args)


def info(msg, *args):
    if _threshold <= 20:
        _out(1, msg, args)


def warning(msg, *args):
    if _threshold <= 30:
        _out(2, msg, args)


def error(msg, *args):
    _out(3, msg, args)
