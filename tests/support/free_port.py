#!/usr/bin/env python3
# Prints a free port on 127.0.0.1 below the ephemeral range: one from
# bind(port 0) could be taken by a parallel test's outgoing connection
# between this check and the daemon's bind.
import random
import socket

lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(64):
    p = random.randrange(10000, lo) if lo > 12000 else 0
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        print(s.getsockname()[1])
        break
    except OSError:
        pass
    finally:
        s.close()
