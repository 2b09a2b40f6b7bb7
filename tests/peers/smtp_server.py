"""A real SMTP server (aiosmtpd) for mailroom's tests.

Listens on 127.0.0.1 (port 0 = any free one), prints `LISTENING <port>` once ready, and writes
every message it accepts to OUT_DIR as `<n>.eml`, with a `<n>.json` beside it recording the
envelope, the authenticated login and whether the session was TLS.

usage: smtp_server.py OUT_DIR [--cert PEM --key PEM] [--user U --password P]
  --cert/--key   offer STARTTLS with this certificate, and refuse mail without it
  --user/--password  require AUTH PLAIN/LOGIN with these credentials
"""
import argparse
import asyncio
import json
import pathlib
import ssl

from aiosmtpd.smtp import SMTP, AuthResult


class Sink:
    def __init__(self, out_dir):
        self.out_dir = pathlib.Path(out_dir)
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        stem = self.out_dir / str(self.count)
        stem.with_suffix(".eml").write_bytes(envelope.original_content or envelope.content)
        stem.with_suffix(".json").write_text(json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": session.auth_data.decode() if isinstance(session.auth_data, bytes) else None,
            "tls": session.ssl is not None,
        }))
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    tls_context = None
    if args.cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = args.user is not None and auth_data.login == args.user.encode() and auth_data.password == args.password.encode()
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

    handler = Sink(args.out_dir)

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
