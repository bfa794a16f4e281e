#!/usr/bin/python3
"""A link with latency between two network namespaces, in user space, for kernels without netem.

Each namespace gets a TUN device; one half of this program runs in each (`ip netns exec`), reads
the packets its namespace sends, passes them to the other half over a Unix socket (a file path:
it crosses namespaces), and the other half writes each one into its own TUN device `delay`
seconds after it was read. Order is kept (a constant delay). Used by bench/distributed.py:

  ip netns exec A bench/netdelay.py half /tmp/link.sock listen 10.205.0.1 0.002 &
  ip netns exec B bench/netdelay.py half /tmp/link.sock connect 10.205.0.2 0.002 &
"""
import collections
import fcntl
import os
import socket
import struct
import subprocess
import sys
import threading
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
DEV = "ktfd0"
MTU = 16000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def half(path, role, address, delay):
    tun = open_tun(DEV)
    for cmd in (f"ip link set {DEV} mtu {MTU}", f"ip addr add {address}/24 dev {DEV}",
                f"ip link set {DEV} up", "ip link set lo up"):
        subprocess.run(cmd.split(), check=True)
    if role == "listen":
        if os.path.exists(path):
            os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server.bind(path)
        server.listen(1)
        print("ready", flush=True)
        peer, _ = server.accept()
    else:
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for _ in range(200):
            try:
                peer.connect(path)
                break
            except OSError:
                time.sleep(0.05)
        print("ready", flush=True)
    queue = collections.deque()
    ready = threading.Condition()

    def outgoing():  # this namespace's packets to the other half, stamped with their time
        while True:
            packet = os.read(tun, MTU + 64)
            peer.send(struct.pack("d", time.monotonic()) + packet)

    def incoming():  # the other half's packets, queued until their time has come
        while True:
            data = peer.recv(MTU + 64)
            if not data:
                os._exit(0)
            with ready:
                queue.append(data)
                ready.notify()

    def deliver():
        while True:
            with ready:
                while not queue:
                    ready.wait()
                data = queue.popleft()
            due = struct.unpack("d", data[:8])[0] + delay
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            os.write(tun, data[8:])

    for f in (outgoing, incoming):
        threading.Thread(target=f, daemon=True).start()
    deliver()


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "half":
        sys.exit(__doc__)
    half(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
