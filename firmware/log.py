# Console logging with a level; prints only, so it works the same on host and board.
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_threshold = 20


def set_level(name):
    global _threshold
    _threshold = _LEVELS.get(name, 20)


def enabled(level):
    return _LEVELS[level] >= _threshold


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
