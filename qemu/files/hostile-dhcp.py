#!/usr/bin/env python3
"""A hostile DHCP server for the lab's tap network (qemu/lab boot --net tap --hostile-dhcp SET).

Runs in the run's network namespace on the bridge, instead of dnsmasq. Every message is built
byte by byte here, independent of the codec under test. To each DISCOVER, REQUEST or INFORM of
the client it first sends replies the client must ignore as a whole (malformed, not for it, an
address no host can have), then one reply it can use, which carries the hostile values of SET:
options that must each be refused and named in the report's `rejected`, the lease still taken.
The first REQUEST is answered with an ACK for another address than the one offered only (the
client must ignore it and send the REQUEST again). Every reply sent is logged as `sent <kind> <message>` to LOG.

    hostile-dhcp.py IFACE LOG SET        SET: names-1, names-2 or names-3
"""
import socket
import struct
import sys
import time

NET = "198.51.100"
SERVER = bytes([198, 51, 100, 1])
CLIENT = bytes([198, 51, 100, 15])
MAGIC = bytes([99, 130, 83, 99])
DISCOVER, OFFER, REQUEST, ACK, NAK, INFORM = 1, 2, 3, 5, 6, 8


def ip(text):
    return socket.inet_aton(text)


def opt(code, value):
    """One option; a value over 255 bytes is split into several (RFC 3396)."""
    out = b""
    while True:
        out += bytes([code, min(len(value), 255)]) + value[:255]
        value = value[255:]
        if not value:
            return out


def bootp(xid, chaddr, yiaddr, options, op=2, magic=MAGIC, ciaddr=b"\0" * 4, sname=b"", file=b"", end=True):
    head = struct.pack("!BBBBIHH", op, 1, 6, 0, xid, 0, 0x8000)
    head += ciaddr + yiaddr + SERVER + b"\0" * 4 + chaddr.ljust(16, b"\0")
    head += sname.ljust(64, b"\0")[:64] + file.ljust(128, b"\0")[:128] + magic
    return head + options + (b"\xff" if end else b"")


def common(kind, server=SERVER):
    return opt(53, bytes([kind])) + opt(54, server) + opt(1, ip("255.255.255.0")) + opt(51, struct.pack("!I", 3600))


# Replies the client must ignore whole: (kind, yiaddr, builder(xid, chaddr, reply type)).
# Each offers another address, so one taken by mistake shows in the lease.
def ignored(xid, mac, kind, inform=False):
    good = common(kind) + opt(3, SERVER)
    other_mac = b"\x02\x00\x00\x00\x00\x08"
    replies = [
        ("garbage", b"\x02\x01\x06\x00garbage"),
        ("truncated-header", bootp(xid, mac, ip(NET + ".101"), good)[:200]),
        ("bad-magic-cookie", bootp(xid, mac, ip(NET + ".102"), good, magic=b"\x63\x82\x53\x00")),
        ("op-bootrequest", bootp(xid, mac, ip(NET + ".103"), good, op=1)),
        ("other-transaction", bootp(xid ^ 0xFF000000, mac, ip(NET + ".104"), good)),
        ("other-client", bootp(xid, other_mac, ip(NET + ".105"), good)),
        ("no-message-type", bootp(xid, mac, ip(NET + ".106"), good[3:])),
        ("lease-for-0.0.0.0", bootp(xid, mac, ip("0.0.0.0"), good)),
        ("lease-for-255.255.255.255", bootp(xid, mac, ip("255.255.255.255"), good)),
        ("lease-for-the-subnet-broadcast", bootp(xid, mac, ip(NET + ".255"), good)),
        ("lease-for-the-network-address", bootp(xid, mac, ip(NET + ".0"), good)),
        ("lease-for-a-multicast-address", bootp(xid, mac, ip("224.0.0.1"), good)),
        ("lease-for-loopback", bootp(xid, mac, ip("127.0.0.1"), good)),
    ]
    if inform:
        # Any ACK answers an INFORM (its yiaddr is not read): only what is no ACK for this client.
        replies = [r for r in replies if not r[0].startswith("lease-for-")]
    elif kind == OFFER:
        no_server_id = opt(53, bytes([OFFER])) + opt(1, ip("255.255.255.0"))
        replies.append(("offer-without-server-id", bootp(xid, mac, ip(NET + ".107"), no_server_id)))
        replies.append(("ack-in-reply-to-discover", bootp(xid, mac, ip(NET + ".108"), common(ACK))))
    else:
        other = ip(NET + ".2")
        replies.append(("nak-from-another-server", bootp(xid, mac, b"\0" * 4, opt(53, bytes([NAK])) + opt(54, other))))
    return replies


# The usable reply's hostile values per SET: (kinds, options, sname, file, end).
def hostile(name):
    if name == "names-1":
        kinds = ["hostname-../../etc", "domain-a;reboot", "root-path-with-..", "router-outside-the-subnet",
                 "dns-wrong-length", "no-end-option"]
        options = (opt(12, b"../../etc") + opt(15, b"a;reboot") + opt(17, b"198.51.100.1:/srv/../../etc")
                   + opt(3, ip("203.0.113.1")) + opt(6, SERVER + b"\x01"))
        return kinds, options, b"", b"", False
    if name == "names-2":
        kinds = ["hostname-$(id)", "domain-newline", "bootfile-nul", "tftp-server-non-utf8",
                 "routers-broadcast-and-0.0.0.0", "mtu-too-small"]
        options = (opt(12, b"$(id)") + opt(15, b"lab\nexample") + opt(67, b"pxe\0linux.0")
                   + opt(66, b"\xff\xfetftp") + opt(3, ip("255.255.255.255") + ip("0.0.0.0"))
                   + opt(26, struct.pack("!H", 40)))
        return kinds, options, b"", b"", True
    if name == "names-3":
        # Option overload: the host name continues in `file` (300 bytes in all), the domain sits
        # in `sname`, with a NUL and no end option there.
        kinds = ["option-overload", "hostname-over-long", "domain-nul", "sname-without-end", "hostname-non-utf8-in-file"]
        options = opt(52, b"\x03") + opt(12, b"a" * 200)
        file = opt(12, b"b" * 99 + b"\xff") + b"\xff"
        sname = opt(15, b"lab\0example")
        return kinds, options, sname, file, True
    sys.exit(f"hostile-dhcp: unknown set {name!r}")


def parse(message):
    """(message type, xid, chaddr, ciaddr) of a client's BOOTREQUEST, or None."""
    if len(message) < 240 or message[0] != 1 or message[236:240] != MAGIC:
        return None
    xid = struct.unpack("!I", message[4:8])[0]
    at = 240
    while at + 1 < len(message):
        code = message[at]
        if code == 0:
            at += 1
            continue
        if code == 255:
            break
        length = message[at + 1]
        if code == 53 and length == 1 and at + 2 < len(message):
            return message[at + 2], xid, message[28:34], message[12:16]
        at += 2 + length
    return None


def main():
    iface, log_path, name = sys.argv[1:4]
    kinds, options, sname, file, end = hostile(name)
    log = open(log_path, "a", buffering=1)
    log.write(f"hostile set {name}: {' '.join(kinds)}\n")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    sock.bind(("0.0.0.0", 67))
    requests = 0
    while True:
        message, _ = sock.recvfrom(4096)
        request = parse(message)
        if request is None:
            continue
        kind, xid, mac, ciaddr = request
        names = {DISCOVER: "DISCOVER", REQUEST: "REQUEST", INFORM: "INFORM"}
        if kind not in names:
            continue
        log.write(f"{time.monotonic():.3f} got {names[kind]}\n")
        answer = OFFER if kind == DISCOVER else ACK
        replies = ignored(xid, mac, answer, inform=kind == INFORM)
        if kind == REQUEST:
            requests += 1
            if requests == 1:
                # The first REQUEST: an ACK for an address other than the one offered.
                replies.append(("ack-for-another-address", bootp(xid, mac, ip(NET + ".16"), common(ACK))))
        yiaddr = b"\0" * 4 if kind == INFORM else CLIENT
        if not (kind == REQUEST and requests == 1):
            usable = bootp(xid, mac, yiaddr, common(answer) + options, ciaddr=ciaddr, sname=sname, file=file, end=end)
            replies.append(("usable:" + ",".join(kinds), usable))
        for what, reply in replies:
            sock.sendto(reply, ("255.255.255.255", 68))
            log.write(f"{time.monotonic():.3f} sent {what} in reply to {names[kind]}\n")


if __name__ == "__main__":
    main()
