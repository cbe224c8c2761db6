# Console logging with a level; prints only, so it works the same on host and board.
_threshold = 20   # debug 10, info 20, warning 30, error 40


def set_level(name):
    global _threshold
    names = ("debug", "info", "warning", "error")
    _threshold = names.index(name) * 10 + 10 if name in names else 20


def debug(msg, *args):
    if _threshold <= 10:
        print("D " + (msg % args if args else msg))


def info(msg, *args):
    if _threshold <= 20:
        print("I " + (msg % args if args else msg))


def warning(msg, *args):
    if _threshold <= 30:
        print("W " + (msg % args if args else msg))


def error(msg, *args):
    print("E " + (msg % args if args else msg))
