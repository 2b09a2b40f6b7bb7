"""A small SOCKS5 proxy (RFC 1928 CONNECT, RFC 1929 username/password) for the proxy tests.

The verification engine, given `[verify] proxy = "socks5://..."`, must open every SMTP probe
through the proxy and none directly. This server relays each granted CONNECT to its target and
counts what it saw in STATS, so that a test can tell the probes went through it. Standard library
only. Listens on HOST and PORT (0 = any free one) and prints `LISTENING <port>` once ready.
Exits cleanly on SIGTERM/SIGINT (open relays are closed, the stats written one last time).

usage: socks5_server.py [--host 127.0.0.1] [--port 0] [--user U --password P] [--stats STATS.json]
  --user, --password  given (both): only method 0x02 (username/password) is accepted, and wrong
                      credentials get status 0x01 and the connection closed; not given: only
                      method 0x00 (no authentication). A client offering no acceptable method
                      gets 0xFF and the connection closed.
  Requests: CONNECT with an IPv4 address, a domain name (resolved here) or an IPv6 address.
  BIND and UDP ASSOCIATE get reply 0x07, an unknown address type 0x08. A CONNECT whose target
  cannot be reached gets 0x05 (connection refused), 0x04 (host unreachable: no such name, or a
  timeout after --connect-timeout seconds, default 10), 0x03 (network unreachable) or 0x01
  (anything else). A granted one is relayed both ways until either side closes.
  --stats  JSON rewritten atomically (temp file, then rename) at start, when a connection is
           accepted, after an authentication failure, after each CONNECT is decided (before the
           reply goes out), when a relay or connection ends, and on exit:
    connections   TCP connections accepted
    auth_failures wrong username/password, or no acceptable method offered
    connects      CONNECT requests granted (relayed)
    refused       CONNECT requests whose target could not be reached
    targets       every CONNECT target as requested, "host:port" ("[v6]:port" for IPv6), in
                  order, capped at 10000; targets_truncated: whether the cap was hit
    open_now      relays open at the moment (0 once every granted CONNECT has ended)
"""
import argparse
import asyncio
import errno
import hmac
import ipaddress
import json
import os
import signal
import socket
import struct

TARGETS_CAP = 10_000
VERSION = 0x05
AUTH_VERSION = 0x01
NO_AUTH, USER_PASS, NO_ACCEPTABLE = 0x00, 0x02, 0xFF
CMD_CONNECT = 0x01
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 0x01, 0x03, 0x04
# Reply codes (RFC 1928 section 6).
SUCCEEDED = 0x00
GENERAL_FAILURE = 0x01
NETWORK_UNREACHABLE = 0x03
HOST_UNREACHABLE = 0x04
CONNECTION_REFUSED = 0x05
COMMAND_NOT_SUPPORTED = 0x07
ADDRESS_TYPE_NOT_SUPPORTED = 0x08
RELAY_CHUNK = 65536


class Stats:
    def __init__(self, path):
        self.path = path
        self.connections = 0
        self.auth_failures = 0
        self.connects = 0
        self.refused = 0
        self.targets = []
        self.targets_truncated = False
        self.open_now = 0

    def target(self, text):
        if len(self.targets) < TARGETS_CAP:
            self.targets.append(text)
        else:
            self.targets_truncated = True

    def write(self):
        if not self.path:
            return
        body = json.dumps({
            "connections": self.connections,
            "auth_failures": self.auth_failures,
            "connects": self.connects,
            "refused": self.refused,
            "targets": self.targets,
            "targets_truncated": self.targets_truncated,
            "open_now": self.open_now,
        })
        temp = f"{self.path}.tmp.{os.getpid()}"
        with open(temp, "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(temp, self.path)


def reply(code, bound=None):
    """A request's reply; BND.ADDR/BND.PORT are the outgoing socket's, or 0.0.0.0:0."""
    host, port = bound[:2] if bound else ("0.0.0.0", 0)
    address = ipaddress.ip_address(host)
    atyp = ATYP_IPV4 if address.version == 4 else ATYP_IPV6
    return bytes([VERSION, code, 0x00, atyp]) + address.packed + struct.pack("!H", port)


def reply_code(error):
    """The SOCKS reply for a failed connection to a target."""
    if isinstance(error, ConnectionRefusedError):
        return CONNECTION_REFUSED
    if isinstance(error, (socket.gaierror, TimeoutError)):
        return HOST_UNREACHABLE
    if isinstance(error, OSError):
        if error.errno == errno.ENETUNREACH:
            return NETWORK_UNREACHABLE
        if error.errno == errno.EHOSTUNREACH:
            return HOST_UNREACHABLE
        if error.errno == errno.ECONNREFUSED:
            return CONNECTION_REFUSED
    return GENERAL_FAILURE


async def pipe(reader, writer):
    try:
        while data := await reader.read(RELAY_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass


async def relay(client_reader, client_writer, target_reader, target_writer):
    """Both ways, until either side closes (or fails); then both are closed."""
    tasks = [
        asyncio.create_task(pipe(client_reader, target_writer)),
        asyncio.create_task(pipe(target_reader, client_writer)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Proxy:
    def __init__(self, stats, credentials, connect_timeout):
        self.stats = stats
        self.credentials = credentials  # (user bytes, password bytes) or None
        self.connect_timeout = connect_timeout
        self.tasks = set()

    async def handle(self, reader, writer):
        task = asyncio.current_task()
        self.tasks.add(task)
        self.stats.connections += 1
        self.stats.write()
        try:
            await self.session(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass  # the client went away mid-handshake
        except asyncio.CancelledError:
            # Shutting down. Not re-raised: this is the connection's own task, and a cancelled
            # one makes Python 3.11's start_server log a spurious traceback.
            pass
        finally:
            self.tasks.discard(task)
            writer.close()
            self.stats.write()

    async def session(self, reader, writer):
        if not await self.negotiate(reader, writer):
            return
        version, command, _reserved, atyp = await reader.readexactly(4)
        if version != VERSION:
            return
        if atyp == ATYP_IPV4:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
            shown = host
        elif atyp == ATYP_DOMAIN:
            length = (await reader.readexactly(1))[0]
            host = (await reader.readexactly(length)).decode("utf-8", "replace")
            shown = host
        elif atyp == ATYP_IPV6:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
            shown = f"[{host}]"
        else:
            await self.send(writer, reply(ADDRESS_TYPE_NOT_SUPPORTED))
            return
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        if command != CMD_CONNECT:
            await self.send(writer, reply(COMMAND_NOT_SUPPORTED))
            return
        await self.connect(reader, writer, host, port, f"{shown}:{port}")

    async def negotiate(self, reader, writer):
        """Method selection and, when credentials are set, the RFC 1929 subnegotiation."""
        version, count = await reader.readexactly(2)
        if version != VERSION:
            return False
        methods = await reader.readexactly(count)
        wanted = USER_PASS if self.credentials else NO_AUTH
        if wanted not in methods:
            self.stats.auth_failures += 1
            self.stats.write()
            await self.send(writer, bytes([VERSION, NO_ACCEPTABLE]))
            return False
        await self.send(writer, bytes([VERSION, wanted]))
        if wanted == NO_AUTH:
            return True
        version = (await reader.readexactly(1))[0]
        user = await reader.readexactly((await reader.readexactly(1))[0])
        password = await reader.readexactly((await reader.readexactly(1))[0])
        expected_user, expected_password = self.credentials
        # Both compared, whatever the first gives: no timing hint (a habit more than a need).
        user_ok = hmac.compare_digest(user, expected_user)
        password_ok = hmac.compare_digest(password, expected_password)
        if version == AUTH_VERSION and user_ok and password_ok:
            await self.send(writer, bytes([AUTH_VERSION, 0x00]))
            return True
        self.stats.auth_failures += 1
        self.stats.write()
        await self.send(writer, bytes([AUTH_VERSION, 0x01]))
        return False

    async def connect(self, reader, writer, host, port, shown):
        stats = self.stats
        stats.target(shown)
        try:
            target_reader, target_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.connect_timeout
            )
        except (OSError, asyncio.TimeoutError, UnicodeError) as error:
            stats.refused += 1
            stats.write()
            await self.send(writer, reply(reply_code(error)))
            return
        stats.connects += 1
        stats.open_now += 1
        stats.write()
        try:
            await self.send(writer, reply(SUCCEEDED, target_writer.get_extra_info("sockname")))
            await relay(reader, writer, target_reader, target_writer)
        finally:
            stats.open_now -= 1
            stats.write()
            target_writer.close()

    @staticmethod
    async def send(writer, data):
        writer.write(data)
        await writer.drain()


def main():
    parser = argparse.ArgumentParser(description="SOCKS5 proxy for the proxy tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--stats")
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    args = parser.parse_args()
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    for value in (args.user, args.password):
        if value is not None and len(value.encode("utf-8")) > 255:
            parser.error("a username or password has at most 255 bytes (RFC 1929)")
    credentials = None
    if args.user is not None:
        credentials = (args.user.encode("utf-8"), args.password.encode("utf-8"))

    stats = Stats(args.stats)
    proxy = Proxy(stats, credentials, args.connect_timeout)

    async def serve():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = await asyncio.start_server(proxy.handle, host=args.host, port=args.port)
        stats.write()
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        await stop.wait()
        server.close()
        tasks = list(proxy.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stats.write()

    try:
        asyncio.run(serve())
    except OSError as error:
        raise SystemExit(f"socks5_server: cannot listen on {args.host}:{args.port}: {error}")


if __name__ == "__main__":
    main()
