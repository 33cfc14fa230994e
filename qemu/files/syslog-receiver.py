#!/usr/bin/env python3
"""stateless QEMU lab: the syslog server of one run (RFC 5426: syslog over UDP, port 514),
started by ns-services.sh inside the run's network namespace. Clients reach it at 10.0.2.2 (QEMU's
user-mode network maps that to the namespace's loopback) or at the tap network's .1 (dnsmasq names
it as the log server, DHCP option 7). Writes each datagram as one line, as received (a newline in
one written as a backslash and n), to the file named as its argument."""
import socket
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
sock.bind(("0.0.0.0", 514))
with open(sys.argv[1], "ab", buffering=0) as out:
    while True:
        data, _ = sock.recvfrom(65535)
        out.write(data.replace(b"\n", b"\\n") + b"\n")
