# Joining All-CoAP-Nodes (RFC 7252 12.8). Boot-only: the app drops this module afterwards.
import socket

from firmware import compat
from firmware.compat import const

GROUP = "224.0.1.187"
_IPPROTO_IP = const(0)          # the same everywhere; the unix port's socket module lacks the name
_IP_MULTICAST_ALL = const(49)   # Linux only: deliver just the groups this socket joined


def open_group_socket(port, iface):
    """A receive-only socket bound to the group, so whatever it reads was sent to the group.
    Replies go out of the unicast socket, from our own address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(compat.sockaddr(GROUP, port))
    # struct ip_mreq: the group, then the interface's address (0.0.0.0: the default one).
    mreq = bytes([int(x) for x in (GROUP + "." + iface).split(".")])
    sock.setsockopt(_IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    sock.setblocking(False)
    return sock


def keep_wildcard_out(sock):
    """Linux: a wildcard-bound unicast socket would also get the group's datagrams; stop that."""
    try:
        sock.setsockopt(_IPPROTO_IP, _IP_MULTICAST_ALL, 0)
    except OSError:
        pass  # not Linux: the board binds the unicast socket to its own address instead
