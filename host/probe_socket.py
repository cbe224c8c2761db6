# A `socket` module that sends nowhere, for the probes that boot the real firmware inside one VM
# process (tools/mp_memprobe.py, tools/oscore_probe.py, tools/profile_get.py): nothing leaves the
# process, and nothing arrives. Host-only: never on a board. Runs under the unix and WebAssembly
# ports (which has no socket module) and CPython.


class Socket:
    """A UDP socket: sendto() counts every datagram in Socket.count and, while Socket.keep is
    true, appends a copy to Socket.sent (one list for every socket: the probe reads and clears
    it; with keep false a send allocates nothing)."""
    sent = []
    keep = True
    count = 0

    def __init__(self, *args):
        pass

    def setsockopt(self, *args):
        pass

    def bind(self, addr):
        pass

    def setblocking(self, flag):
        pass

    def close(self):
        pass

    def sendto(self, data, addr):
        Socket.count += 1
        if Socket.keep:
            Socket.sent.append(bytes(data))
        return len(data)

    def recvfrom(self, n):
        raise OSError(11)  # EAGAIN: nothing ever arrives from outside


class Module:
    """What the firmware takes from `socket`."""
    AF_INET = 2
    SOCK_DGRAM = 2
    SOL_SOCKET = 1
    SO_REUSEADDR = 2
    IPPROTO_IP = 0
    IP_ADD_MEMBERSHIP = 35
    socket = Socket

    @staticmethod
    def getaddrinfo(host, port, *args):
        return [(2, 2, 0, "", (host, port))]


def install():
    """Put Module in the place of `socket` for every import from now on."""
    import sys
    sys.modules["socket"] = Module
