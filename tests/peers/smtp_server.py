"""A real SMTP server (aiosmtpd) for mailroom's tests.

Listens on 127.0.0.1 (port 0 = any free one), prints `LISTENING <port>` once ready, and writes
every message it accepts to OUT_DIR as `<n>.eml`, with a `<n>.json` beside it recording the
envelope, the authenticated login and whether the session was TLS.

Each `<n>.json` also holds the message as Python's `email` package reads it (`parsed`: the
decoded subject, from, to and cc, the text and HTML bodies, the attachments' file names and
types): an independent check of what mailroom composes.

usage: smtp_server.py OUT_DIR [--cert PEM --key PEM] [--user U --password P]
                      [--refuse ADDRESS=REPLY ...] [--slow ADDRESS=SECONDS ...]
                      [--dkim-dns HOST:PORT]
  --cert/--key   offer STARTTLS with this certificate, and refuse mail without it
  --user/--password  require AUTH PLAIN/LOGIN with these credentials
  --refuse       answer RCPT TO:<ADDRESS> with REPLY ("550 5.1.1 No such user", say)
  --slow         answer RCPT TO:<ADDRESS> only after SECONDS
  --dkim-dns     check each message's DKIM signature with dkimpy, the public key looked up
                 at this DNS server (`dkim` in `<n>.json`: verified, and why not)

Each `<n>.json` says how many transactions were between RCPT and the end of DATA when the
message came (`in_flight`, itself included): how many messages a client sent at once.
"""
import argparse
import asyncio
import email
import email.policy
import json
import pathlib
import ssl

from aiosmtpd.smtp import SMTP, AuthResult


def parsed(raw):
    """The message as Python's email package reads it."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return {
        "subject": message["subject"],
        "from": message["from"],
        "to": message["to"],
        "cc": message["cc"],
        "bcc": message["bcc"],
        "message_id": message["message-id"],
        "date": message["date"],
        "text": text.get_content() if text is not None else None,
        "html": html.get_content() if html is not None else None,
        "attachments": [
            {"filename": part.get_filename(), "content_type": part.get_content_type(),
             "size": len(part.get_payload(decode=True) or b"")}
            for part in message.iter_attachments()
        ],
        "headers": {name: str(value) for name, value in message.items()},
    }


def dkim_check(raw, dns_server):
    """Whether dkimpy verifies the message's DKIM signature, its key from `dns_server`."""
    import dkim
    import dns.resolver

    host, port = dns_server.rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)

    def lookup(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        answer = resolver.resolve(name, "TXT", lifetime=timeout)
        return b"".join(b"".join(record.strings) for record in answer)

    try:
        return {"verified": bool(dkim.verify(raw, dnsfunc=lookup)), "error": None}
    except Exception as error:  # a verifier's refusal, said as it is
        return {"verified": False, "error": str(error)}


class Sink:
    def __init__(self, out_dir, refuse, slow, dkim_dns):
        self.out_dir = pathlib.Path(out_dir)
        self.count = 0
        self.refuse = refuse
        self.slow = slow
        self.dkim_dns = dkim_dns
        self.in_flight = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        if not envelope.rcpt_tos:
            self.in_flight += 1
        envelope.rcpt_tos.append(address)
        if address in self.slow:
            await asyncio.sleep(self.slow[address])
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        in_flight = self.in_flight
        self.in_flight -= 1
        self.count += 1
        stem = self.out_dir / str(self.count)
        raw = envelope.original_content or envelope.content
        stem.with_suffix(".eml").write_bytes(raw)
        stem.with_suffix(".json").write_text(json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": session.auth_data.decode() if isinstance(session.auth_data, bytes) else None,
            "tls": session.ssl is not None,
            "in_flight": in_flight,
            "dkim": dkim_check(raw, self.dkim_dns) if self.dkim_dns else None,
            "parsed": parsed(raw),
        }))
        return "250 2.0.0 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--refuse", action="append", default=[])
    parser.add_argument("--slow", action="append", default=[])
    parser.add_argument("--dkim-dns")
    args = parser.parse_args()
    refuse = dict(rule.split("=", 1) for rule in args.refuse)
    slow = {address: float(seconds) for address, seconds in (rule.split("=", 1) for rule in args.slow)}

    tls_context = None
    if args.cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = args.user is not None and auth_data.login == args.user.encode() and auth_data.password == args.password.encode()
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

    handler = Sink(args.out_dir, refuse, slow, args.dkim_dns)

    def factory():
        return SMTP(
            handler,
            hostname="sink.test",
            tls_context=tls_context,
            require_starttls=tls_context is not None,
            authenticator=authenticate if args.user else None,
            auth_required=args.user is not None,
            # Plain-text AUTH only after STARTTLS, unless the test runs without TLS.
            auth_require_tls=tls_context is not None,
        )

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, host="127.0.0.1", port=0)
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
