"""A real SMTP server (aiosmtpd) that plays a mail exchanger for the SMTP probe tests.

The verification engine connects, says EHLO, MAIL FROM, RCPT TO one or more addresses (RSET between
batches) and QUIT; it never sends DATA. This server answers each recipient as CONFIG says and
keeps counts of what it saw in STATS. Listens on HOST (each MX host of a test gets its own
127.0.0.x address) and PORT (0 = any free one; several instances may share one explicit port on
different addresses), and prints `LISTENING <port>` once ready. Exits cleanly on SIGTERM/SIGINT.

usage: smtp_probe_server.py --host 127.0.0.5 --port 0 --config CONFIG.json [--stats STATS.json]
  --config   JSON, re-read at a new connection when its mtime changed (a broken file keeps the old):
    greeting_delay_ms  extra delay before the banner only
    reply_delay_ms     delay before EVERY reply (banner, EHLO, MAIL, RCPT, RSET, QUIT, errors);
                       a multi-line reply is delayed once
    default            reply to an unlisted recipient ("550 5.1.1 No such user")
    catch_all          true: every unlisted recipient gets "250 2.1.5 OK"
    recipients         {address: reply} matched case-insensitively on the whole address; reply is
                       "NNN text", or an object with any of
                       reply ("250 2.1.5 OK"), delay_ms (delay of this RCPT's reply),
                       greylist N + temp ("450 4.2.0 Greylisted, try again later") + then (reply):
                       the first N RCPTs of the address, across sessions, get temp, later ones then
    mail_from_reply    reply to MAIL FROM (null: "250 2.1.0 OK"); a non-2xx one leaves no sender
    hang_on_connect    true: accept TCP but never send the banner (until the client goes, or 300 s)
    max_sessions       N: a connection that makes more than N open at once gets
                       "421 4.7.0 Too many connections" as its banner and is closed
    refuse_first       N: the first N connections get that 421 banner, whatever else is open
    drop_sessions      N: the first N sessions that reach their drop_after_rcpts-th RCPT are
    drop_after_rcpts   closed there, without a reply (a reset mid-session); default 1st RCPT
  DATA is always refused with "554 5.7.1 This server does not accept mail during tests" and counted
  in data_attempts (a violation: the probe must never send DATA).
  --stats    JSON rewritten atomically (temp file, then rename) at start, at every new
             connection, on QUIT (before the 221 reply goes out, with the session already counted
             as ended), at the end of every session and on exit:
    sessions, max_concurrent_sessions, concurrent_now (all three count every TCP connection,
    the hung and the 421 ones too), rejected_sessions (421 by max_sessions or refuse_first),
    dropped_sessions (closed by drop_sessions),
    rcpt (RCPT commands that reached the recipient checks: not one refused earlier by aiosmtpd,
    such as 503 without an accepted MAIL, or a syntax error), rcpt_per_session_max,
    rcpt_per_transaction_max (between MAIL and RSET/MAIL/EHLO), rset, data_attempts, quit,
    helo_names (distinct, in order), mail_from (distinct, in order; the null sender is "<>"),
    rcpts (every RCPT address as sent, in order, capped at 100000), rcpts_truncated
  --hostname name in the banner and EHLO reply (mx.test)
"""
import argparse
import asyncio
import json
import os
import signal
import sys

from aiosmtpd.smtp import SMTP, syntax

RCPTS_CAP = 100_000
DEFAULTS = {
    "greeting_delay_ms": 0,
    "reply_delay_ms": 0,
    "default": "550 5.1.1 No such user",
    "recipients": {},
    "catch_all": False,
    "mail_from_reply": None,
    "hang_on_connect": False,
    "max_sessions": None,
    "refuse_first": 0,
    "drop_sessions": 0,
    "drop_after_rcpts": 1,
}
ACCEPT = "250 2.1.5 OK"
GREYLISTED = "450 4.2.0 Greylisted, try again later"
DATA_REFUSED = "554 5.7.1 This server does not accept mail during tests"


def warn(message):
    print(f"smtp_probe_server: {message}", file=sys.stderr, flush=True)


class Config:
    """The config file, re-read when its mtime changes; a file that does not parse keeps the old."""

    def __init__(self, path):
        self.path = path
        self.stamp = None
        self.current = None
        self.refresh()
        if self.current is None:
            raise SystemExit(f"smtp_probe_server: cannot load config {path}")

    def refresh(self):
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self.stamp:
                return self.current
            with open(self.path, encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, ValueError) as error:
            warn(f"config {self.path} not (re)loaded: {error}")
            return self.current
        unknown = set(raw) - set(DEFAULTS)
        if unknown:
            warn(f"unknown config keys ignored: {sorted(unknown)}")
        # A key that is null or missing takes its default.
        config = {**DEFAULTS, **{k: v for k, v in raw.items() if k in DEFAULTS and v is not None}}
        config["recipients"] = {k.lower(): v for k, v in (config["recipients"] or {}).items()}
        self.stamp, self.current = stamp, config
        return config


class Stats:
    def __init__(self, path):
        self.path = path
        self.sessions = 0
        self.max_concurrent = 0
        self.concurrent = 0
        self.rejected = 0
        self.rcpt = 0
        self.rcpt_per_session_max = 0
        self.rcpt_per_transaction_max = 0
        self.rset = 0
        self.data_attempts = 0
        self.quit = 0
        self.helo_names = {}  # dicts keep insertion order: distinct values, in order
        self.mail_from = {}
        self.rcpts = []
        self.rcpts_truncated = False
        self.greylist_seen = {}  # lower-cased address -> RCPTs seen of it
        self.refused_first = 0
        self.dropped = 0

    def write(self):
        if not self.path:
            return
        body = json.dumps({
            "sessions": self.sessions,
            "max_concurrent_sessions": self.max_concurrent,
            "concurrent_now": self.concurrent,
            "rejected_sessions": self.rejected,
            "dropped_sessions": self.dropped,
            "rcpt": self.rcpt,
            "rcpt_per_session_max": self.rcpt_per_session_max,
            "rcpt_per_transaction_max": self.rcpt_per_transaction_max,
            "rset": self.rset,
            "data_attempts": self.data_attempts,
            "quit": self.quit,
            "helo_names": list(self.helo_names),
            "mail_from": list(self.mail_from),
            "rcpts": self.rcpts,
            "rcpts_truncated": self.rcpts_truncated,
        })
        temp = f"{self.path}.tmp.{os.getpid()}"
        with open(temp, "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(temp, self.path)


class ProbeHandler:
    """aiosmtpd hooks: the replies a mail exchanger gives to a probe, and the counting."""

    def __init__(self, stats):
        self.stats = stats

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.stats.helo_names.setdefault(hostname, None)
        server.transaction_rcpts = 0
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        self.stats.helo_names.setdefault(hostname, None)
        server.transaction_rcpts = 0
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.stats.mail_from.setdefault(address, None)
        server.transaction_rcpts = 0
        reply = server.config["mail_from_reply"] or "250 2.1.0 OK"
        if reply.startswith("2"):
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
        return reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        stats = self.stats
        config = server.config
        if (
            stats.dropped < config["drop_sessions"]
            and server.session_rcpts + 1 == config["drop_after_rcpts"]
        ):
            stats.dropped += 1
            server.transport.abort()
            server.end_session()
            return "421 4.4.2 Never sent: the connection is gone"
        stats.rcpt += 1
        server.session_rcpts += 1
        server.transaction_rcpts += 1
        stats.rcpt_per_session_max = max(stats.rcpt_per_session_max, server.session_rcpts)
        stats.rcpt_per_transaction_max = max(
            stats.rcpt_per_transaction_max, server.transaction_rcpts
        )
        if len(stats.rcpts) < RCPTS_CAP:
            stats.rcpts.append(address)
        else:
            stats.rcpts_truncated = True

        key = address.lower()
        spec = config["recipients"].get(key)
        delay_ms = 0
        if spec is None:
            reply = ACCEPT if config["catch_all"] else config["default"]
        elif isinstance(spec, str):
            reply = spec
        else:
            delay_ms = spec.get("delay_ms") or 0
            reply = spec.get("then") or spec.get("reply") or ACCEPT
            if spec.get("greylist"):
                seen = stats.greylist_seen.get(key, 0)
                stats.greylist_seen[key] = seen + 1
                if seen < spec["greylist"]:
                    reply = spec.get("temp") or GREYLISTED
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def handle_RSET(self, server, session, envelope):
        self.stats.rset += 1
        server.transaction_rcpts = 0
        return "250 2.0.0 OK"

    async def handle_QUIT(self, server, session, envelope):
        self.stats.quit += 1
        # Counted as ended before the 221 goes out, so a client that has its reply finds the
        # stats file complete.
        server.end_session()
        return "221 2.0.0 Bye"


class ProbeSMTP(SMTP):
    """Adds the delays, the banner rules (hang, 421) and the session counting; refuses DATA."""

    open_sessions = set()

    def __init__(self, handler, config, stats, **kwargs):
        super().__init__(handler, **kwargs)
        self.config_source = config
        self.config = config.current
        self.stats = stats
        self.session_rcpts = 0
        self.transaction_rcpts = 0
        self.ended = True
        self.in_multiline = False

    def connection_made(self, transport):
        if self.transport is None:  # a new connection (no STARTTLS here)
            self.config = self.config_source.refresh()
            stats = self.stats
            stats.sessions += 1
            stats.concurrent += 1
            stats.max_concurrent = max(stats.max_concurrent, stats.concurrent)
            self.ended = False
            self.open_sessions.add(self)
            # Written now too: a reader must not take the file for final while a connection
            # it caused is still being served.
            stats.write()
        super().connection_made(transport)

    def connection_lost(self, error):
        super().connection_lost(error)
        self.end_session()

    def end_session(self):
        if self.ended:
            return
        self.ended = True
        self.open_sessions.discard(self)
        self.stats.concurrent -= 1
        self.stats.write()

    async def push(self, status):
        line = status if isinstance(status, str) else status.decode("ascii", "replace")
        first_line = not self.in_multiline
        self.in_multiline = line[3:4] == "-"
        delay_ms = self.config["reply_delay_ms"] or 0
        if first_line and delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        await super().push(status)

    async def _handle_client(self):
        config = self.config
        try:
            if config["hang_on_connect"]:
                await asyncio.get_running_loop().create_future()  # until the connection goes
            limit = config["max_sessions"]
            refuse_first = self.stats.refused_first < config["refuse_first"]
            if refuse_first:
                self.stats.refused_first += 1
            if refuse_first or (limit is not None and self.stats.concurrent > limit):
                self.stats.rejected += 1
                # Refused is over: a client that reconnects after this reply must not find
                # the refused connection still counted against the limit.
                self.end_session()
                await self.push("421 4.7.0 Too many connections")
                self.transport.close()
                return
            if config["greeting_delay_ms"]:
                await asyncio.sleep(config["greeting_delay_ms"] / 1000)
        except asyncio.CancelledError:
            if self.transport is not None:
                self.transport.close()
            raise
        await super()._handle_client()

    @syntax("DATA")
    async def smtp_DATA(self, arg):
        self.stats.data_attempts += 1
        warn(f"VIOLATION: DATA from {self.session.peer}")
        await self.push(DATA_REFUSED)


def main():
    parser = argparse.ArgumentParser(description="SMTP mail exchanger for the probe tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--config", required=True)
    parser.add_argument("--stats")
    parser.add_argument("--hostname", default="mx.test")
    args = parser.parse_args()

    config = Config(args.config)
    stats = Stats(args.stats)
    handler = ProbeHandler(stats)

    def factory():
        return ProbeSMTP(handler, config, stats, hostname=args.hostname, ident="probe peer")

    async def serve():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = await loop.create_server(factory, host=args.host, port=args.port)
        stats.write()
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        await stop.wait()
        server.close()
        for protocol in list(ProbeSMTP.open_sessions):
            if protocol.transport is not None:
                protocol.transport.close()
        await asyncio.sleep(0.05)  # let connection_lost run
        stats.write()

    try:
        asyncio.run(serve())
    except OSError as error:
        raise SystemExit(f"smtp_probe_server: cannot listen on {args.host}:{args.port}: {error}")


if __name__ == "__main__":
    main()
