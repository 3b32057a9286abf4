#!/usr/bin/env python3
"""An SMTP server for tests (aiosmtpd): every message it accepts is written, decoded, as one
JSON file in --out (NNNNNN.json, renamed into place before the 250 reply, so a test that saw
the send succeed can read it). It can refuse the first --refuse messages with a transient 451
and require a user and password (AUTH PLAIN/LOGIN, without TLS). It prints
`listening on 127.0.0.1:PORT` once ready and exits when its stdin closes."""

import argparse
import asyncio
import email
import email.policy
import json
import os
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, out, refuse):
        self.out = out
        self.refuse = refuse
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 Try again later"
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = {}
        for kind in ("plain", "html"):
            body = message.get_body((kind,))
            parts[kind] = body.get_content() if body is not None else ""
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(message["subject"]),
            "text": parts["plain"],
            "html": parts["html"],
        }
        path = os.path.join(self.out, f"{self.count:06d}.json")
        self.count += 1
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)
        return "250 OK"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    return check


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--refuse", type=int, default=0)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    options = {}
    if args.user:
        options = dict(
            authenticator=authenticator(args.user, args.password or ""),
            auth_required=True,
            auth_require_tls=False,
        )
    sink = Sink(args.out, args.refuse)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="smtp.test", **options), "127.0.0.1", args.port
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
