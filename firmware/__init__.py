# coap-alarm firmware package: a CoAP (RFC 7252) server with an observable /alarm (RFC 7641).
VERSION = "0.1.0"


def unload(name):
    """Forget the boot-only module firmware.<name> so its code's RAM comes back: both
    sys.modules and this package hold a reference to it."""
    import sys
    sys.modules.pop("firmware." + name, None)
    globals().pop(name, None)
