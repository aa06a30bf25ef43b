#!/usr/bin/env python3
"""The lab's side of a tagged VLAN, in user space: frames tagged with VID on the trunk tap (a port of
the provisioning bridge) come out untagged on the access tap (which holds the lab's address on that
VLAN), and frames from the access tap go back tagged. Untagged frames and other VLANs on the trunk
are dropped. The lab uses this instead of a kernel VLAN device because not every host kernel has
8021q (or bridge VLAN filtering); what the servers see on the wire is the same 802.1Q either way.

usage: vlan-relay.py VID TRUNK_TAP ACCESS_TAP   (both taps exist already: ip tuntap add ... mode tap)
"""
import fcntl
import os
import select
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
TPID = b"\x81\x00"


def attach(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def send(fd: int, frame: bytes) -> None:
    # A tap that is down (EIO) or full (ENOBUFS) drops the frame, as a cable or a switch would.
    try:
        os.write(fd, frame)
    except OSError:
        pass


def main() -> None:
    if len(sys.argv) != 4 or not sys.argv[1].isdigit() or not 1 <= int(sys.argv[1]) <= 4094:
        sys.exit("usage: vlan-relay.py VID(1-4094) TRUNK_TAP ACCESS_TAP")
    vid = int(sys.argv[1])
    trunk, access = attach(sys.argv[2]), attach(sys.argv[3])
    print(f"vlan-relay: VLAN {vid} between {sys.argv[2]} (tagged) and {sys.argv[3]} (untagged)", flush=True)
    tag = TPID + struct.pack("!H", vid)
    while True:
        ready, _, _ = select.select([trunk, access], [], [])
        if trunk in ready:
            frame = os.read(trunk, 65536)
            # dst(6) src(6) 0x8100 TCI(2): ours when the VLAN id (low 12 bits of the TCI) matches.
            if len(frame) >= 18 and frame[12:14] == TPID and struct.unpack("!H", frame[14:16])[0] & 0x0FFF == vid:
                send(access, frame[:12] + frame[16:])
        if access in ready:
            frame = os.read(access, 65536)
            if len(frame) >= 14:
                send(trunk, frame[:12] + tag + frame[12:])


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
