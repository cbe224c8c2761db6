# Network bring-up on a board (Wi-Fi). On the host the OS has the network and this is not called.


def start(cfg):
    """Bring the network up; return this device's IP address."""
    return None
