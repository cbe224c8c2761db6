# The VM's ceiling (`make bench`): recvfrom, a fixed CoAP ACK 2.05 "OFF" echoing MID and token, sendto.
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(socket.getaddrinfo("127.0.0.1", int(sys.argv[1]))[0][-1])
while True:
    d, a = s.recvfrom(256)
    s.sendto(bytes((0x60 | d[0] & 15, 0x45)) + d[2:4 + (d[0] & 15)] + b"\xc0\xffOFF", a)
