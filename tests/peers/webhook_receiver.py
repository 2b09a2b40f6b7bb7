"""A webhook receiver for mailroom's tests, checking every delivery's signature with the
`standardwebhooks` package (PyPI): an implementation of the Standard Webhooks specification
independent of mailroom's.

Listens on 127.0.0.1 (port 0 = any free one) and prints `LISTENING <port>` once ready. Each
endpoint is a path, `/<name>`:
  PUT /_secret/<name>   (body: the endpoint's secret) deliveries to /<name> are verified with it
  PUT /_plan/<name>     (body: "500,503,hang") the next answers to /<name>, in order: a status,
                        or `hang` (never answer); 204 once the plan is spent
  POST /<name>          a delivery: written to OUT_DIR as `<n>.json` with its path, headers
                        (lower-cased), body, whether it verified (and why not) and the answer

usage: webhook_receiver.py OUT_DIR
"""
import json
import pathlib
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

OUT = pathlib.Path(sys.argv[1])
LOCK = threading.Lock()
SECRETS = {}
PLANS = {}
COUNT = [0]
# Set only when the receiver stops: a hung answer waits on it.
NEVER = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length)

    def answer(self, status):
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_PUT(self):
        _, kind, name = self.path.split("/", 2)
        body = self.body().decode()
        with LOCK:
            if kind == "_secret":
                SECRETS[name] = body
            elif kind == "_plan":
                PLANS[name] = [step.strip() for step in body.split(",") if step.strip()]
        self.answer(204)

    def do_POST(self):
        name = self.path.lstrip("/")
        body = self.body()
        headers = {key.lower(): value for key, value in self.headers.items()}
        with LOCK:
            secret = SECRETS.get(name)
            plan = PLANS.get(name) or []
            step = plan.pop(0) if plan else "204"
            COUNT[0] += 1
            number = COUNT[0]
        verified, why = False, "no secret for this endpoint"
        if secret is not None:
            try:
                Webhook(secret).verify(body, headers)
                verified, why = True, None
            except WebhookVerificationError as error:
                why = str(error)
        record = {
            "path": self.path,
            "headers": headers,
            "body": body.decode(errors="replace"),
            "verified": verified,
            "why": why,
            "answer": step,
        }
        # Written whole, then renamed: a reader never sees half a record.
        partial = OUT / f".{number}.json"
        partial.write_text(json.dumps(record))
        partial.rename(OUT / f"{number}.json")
        if step == "hang":
            NEVER.wait()
            return
        self.answer(int(step))


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
