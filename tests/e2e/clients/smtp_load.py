#!/usr/bin/env python3
"""Sends numbered test messages over SMTP with Python's smtplib, as a real client.

Each message i goes to every recipient given, from several threads at once; every
message body is derived from its number so the test can rebuild the exact bytes.
A 4xx reply is retried like an MTA would (up to --attempts times). One JSON
line per message goes to stdout: {"i": n, "data_codes": [...], "rcpt_codes": [...],
"accepted": bool}. data_codes lists the replies to the end of DATA across
attempts, so the test can tell a legitimate duplicate (RFC 5321 6.1: a 4xx after
the data was possibly stored) from a real one.
"""
import argparse
import json
import smtplib
import sys
import threading
import time


def message_bytes(i: int, tag: str, pad_kib: int = 0) -> bytes:
    """The exact RFC 5322 bytes of message i (CRLF line endings)."""
    lines = [
        f"From: Sender <sender@remote.test>",
        f"To: Recipients <rcpts@example.test>",
        f"Subject: {tag} message {i}",
        f"Message-ID: <{tag}.{i}@remote.test>",
        "Date: Thu, 26 Nov 2026 07:00:00 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"Body of message {i}.",
        ".a line that starts with a dot",
        "..two dots",
        ".",
        " . not the end",
        "x" * (i % 200),
    ]
    lines += [f"line {j} of message {i}" for j in range(i % 50)]
    # Padding: 1 KiB lines of printable text, some starting with a dot.
    for k in range(pad_kib):
        lines.append(("." if k % 7 == 0 else "p") + (f"{k:08d}" * 128)[:1021])
    return ("\r\n".join(lines) + "\r\n").encode()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--tag", default="e2e")
    p.add_argument("--attempts", type=int, default=1)
    p.add_argument("--retry-pause", type=float, default=0.5)
    p.add_argument("--rcpt", action="append", default=[])
    p.add_argument("--pad-kib", type=int, default=0)
    p.add_argument("--dump", action="store_true",
                   help="print the bytes of each message as hex instead of sending")
    args = p.parse_args()

    if args.dump:
        for i in range(args.start, args.start + args.count):
            print(json.dumps({"i": i, "hex": message_bytes(i, args.tag, args.pad_kib).hex()}))
        return 0

    lock = threading.Lock()
    next_i = [args.start]
    out = sys.stdout

    def take():
        with lock:
            if next_i[0] >= args.start + args.count:
                return None
            i = next_i[0]
            next_i[0] += 1
            return i

    def worker():
        conn = None
        while True:
            i = take()
            if i is None:
                break
            data_codes, rcpt_codes, accepted = [], [], False
            for attempt in range(args.attempts):
                try:
                    if conn is None:
                        conn = smtplib.SMTP(args.host, args.port, timeout=60)
                        conn.ehlo("client.remote.test")
                    code, _ = conn.mail("sender@remote.test")
                    if code != 250:
                        rcpt_codes.append(code)
                        conn.rset()
                        time.sleep(args.retry_pause)
                        continue
                    codes = [conn.rcpt(r)[0] for r in args.rcpt]
                    rcpt_codes.extend(codes)
                    if any(c != 250 for c in codes):
                        conn.rset()
                        if any(500 <= c < 600 for c in codes):
                            break
                        time.sleep(args.retry_pause)
                        continue
                    # smtplib.data() dot-stuffs the body itself.
                    code, _ = conn.data(message_bytes(i, args.tag, args.pad_kib))
                    data_codes.append(code)
                    if code == 250:
                        accepted = True
                        break
                    if 500 <= code < 600:
                        break
                    time.sleep(args.retry_pause)
                except (smtplib.SMTPException, OSError) as e:
                    data_codes.append(str(e)[:80])
                    try:
                        if conn is not None:
                            conn.close()
                    except Exception:
                        pass
                    conn = None
                    time.sleep(args.retry_pause)
            with lock:
                out.write(json.dumps({"i": i, "data_codes": data_codes,
                                      "rcpt_codes": rcpt_codes,
                                      "accepted": accepted}) + "\n")
                out.flush()
        if conn is not None:
            try:
                conn.quit()
            except Exception:
                pass

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
