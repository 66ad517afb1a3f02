#!/usr/bin/env python3
"""A TLS front for a plain HTTP fake on 127.0.0.1, for tests.

Accepts TLS connections on --port with --cert/--key, relays each to
--upstream (host:port), and appends one JSON line per connection to
--log: {"conn": N, "resumed": true|false, "version": "TLSv1.3"}.
Prints READY once listening."""
import argparse
import asyncio
import json
import ssl
import sys


async def pump(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--upstream", required=True, help="host:port of the plain HTTP server")
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    up_host, up_port = a.upstream.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    count = 0
    log = open(a.log, "a", buffering=1)

    async def handle(reader, writer):
        nonlocal count
        count += 1
        so = writer.get_extra_info("ssl_object")
        log.write(json.dumps({"conn": count, "resumed": bool(so.session_reused),
                              "version": so.version()}) + "\n")
        try:
            ur, uw = await asyncio.open_connection(up_host, int(up_port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pump(reader, uw), pump(ur, writer))

    async def run():
        server = await asyncio.start_server(handle, "127.0.0.1", a.port, ssl=ctx)
        print("READY", flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
