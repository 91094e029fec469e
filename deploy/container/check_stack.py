#!/usr/bin/env python3
"""The container test's checks, against the stack deploy/container/up started.

Everything goes through what a user has: the published ports on 127.0.0.1,
the image's own `mailfleet` admin CLI against the published gRPC port, and
the container engine (docker or podman) for exec, kill and stop.

1. every service container's /readyz answers 200 (`mailfleet health` inside it)
2. a domain and accounts created through the published gRPC port
3. a message sent over SMTP is read back over IMAP and POP3
4. Prometheus in the stack scrapes every mailfleet container and RabbitMQ,
   and deploy/live_check.py --stack evaluates every dashboard panel and alert
   there after its traffic, as it does against `mailfleet dev`
5. 500 messages over SMTP while delivery-worker, then mailstore, is killed
   (SIGKILL to its process: a crash, which the restart policy answers);
   every message answered 250 arrives exactly once (one extra copy allowed
   per attempt whose outcome the client could not know: RFC 5321 6.1, as
   tests/e2e defines it)
6. SIGTERM (the engine's stop) with SMTP, IMAP and POP3 sessions open: each
   session gets its protocol's goodbye and every container exits 0 within
   its grace period

Usage: check_stack.py ENGINE PROJECT   (prints "container: N passed, N failed")
"""

import imaplib
import json
import os
import pathlib
import poplib
import re
import signal
import smtplib
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = "localhost/mailfleet:dev"
ADMIN = ["--endpoint", "http://127.0.0.1:50051", "--token", "dev-admin-token"]
SERVICES = ["mailstore", "smtp-gateway", "delivery-worker", "imap-frontend", "pop3-frontend"]
# docker-compose.yml's stop_grace_period.
GRACE = 40
LOAD = 500
PASSWORD = "container-pw"

engine_cmd, project = sys.argv[1], sys.argv[2]
results = {"passed": 0, "failed": 0}
figures = {}


def ok(what):
    results["passed"] += 1
    print(f"ok    {what}", flush=True)


def fail(what, detail=""):
    results["failed"] += 1
    print(f"FAIL  {what}" + (f": {detail}" if detail else ""), flush=True)


def check(what, cond, detail=""):
    (ok if cond else lambda w: fail(w, detail))(what)
    return cond


def engine(*args, check=True):
    r = subprocess.run([engine_cmd, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{engine_cmd} {' '.join(args)}: {r.stderr.strip()}")
    return r


def container(service):
    out = engine("ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
                 "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}").stdout
    names = out.split()
    if len(names) != 1:
        raise RuntimeError(f"expected one {service} container, found {names}")
    return names[0]


def inspect(name, fmt):
    return engine("inspect", "--format", fmt, name).stdout.strip()


def ready(name):
    return engine("exec", name, "/usr/local/bin/mailfleet", "health", "--addr", "127.0.0.1:8080",
                  "--path", "/readyz", check=False).returncode == 0


def wait_for(what, probe, timeout):
    """Deadlines only fail a hang."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if probe():
                return True
        except Exception:  # noqa: BLE001 (not there yet)
            pass
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def cli(*args):
    """The image's admin CLI against the published gRPC port."""
    return engine("run", "--rm", "--network", "host", IMAGE, *args, *ADMIN)


def password(user):
    return "demo" if user == "demo@example.test" else PASSWORD


def subjects(user):
    """Subjects of every message in user's INBOX, over IMAP."""
    with imaplib.IMAP4("127.0.0.1", 1143, timeout=60) as m:
        m.login(user, password(user))
        typ, data = m.select("INBOX", readonly=True)
        if typ != "OK" or int(data[0]) == 0:
            return []
        typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        out = []
        for item in data:
            if isinstance(item, tuple):
                text = item[1].decode(errors="replace")
                out.append(re.sub(r"(?is)^subject:\s*", "", text.strip()))
        return out


def send(rcpt, subject):
    with smtplib.SMTP("127.0.0.1", 2525, timeout=60) as s:
        s.sendmail("sender@remote.test", [rcpt],
                   f"From: <sender@remote.test>\r\nSubject: {subject}\r\n\r\n{subject}\r\n".encode())


def step_ready():
    for svc in SERVICES:
        check(f"{svc}: /readyz answers 200 inside its container", ready(container(svc)))


def step_admin():
    cli("domain", "add", "example.test")
    # demo/demo as `mailfleet dev` makes it: deploy/live_check.py logs in so.
    cli("account", "add", "demo@example.test", "--password", "demo")
    for user in ["load", "ivy", "pat"]:
        cli("account", "add", f"{user}@example.test", "--password", PASSWORD)
    listed = cli("account", "list", "example.test").stdout
    check("domain and accounts created through the published gRPC port (mailfleet ... --endpoint --token)",
          all(f"{u}@example.test" in listed for u in ["demo", "load", "ivy", "pat"]), listed)


def step_mail():
    send("demo@example.test", "container hello")
    wait_for("the message over IMAP", lambda: "container hello" in subjects("demo@example.test"), 60)
    with imaplib.IMAP4("127.0.0.1", 1143, timeout=60) as m:
        m.login("demo@example.test", "demo")
        m.select("INBOX")
        typ, data = m.fetch("1", "(BODY[])")
        check("SMTP in, IMAP out: FETCH BODY[] has the message",
              typ == "OK" and b"container hello" in data[0][1], str(data)[:200])
    p = poplib.POP3("127.0.0.1", 1110, timeout=60)
    p.user("demo@example.test")
    p.pass_("demo")
    count, _ = p.stat()
    _, lines, _ = p.retr(1)
    p.quit()
    check("SMTP in, POP3 out: RETR 1 has the message",
          count == 1 and any(b"container hello" in l for l in lines), f"{count} messages")


def step_prometheus():
    def up():
        q = urllib.parse.quote("up")
        with urllib.request.urlopen(f"http://127.0.0.1:9090/api/v1/query?query={q}", timeout=5) as r:
            res = json.load(r)["data"]["result"]
        return {(x["metric"].get("service") or x["metric"]["job"]): x["value"][1] for x in res}
    try:
        wait_for("Prometheus to scrape every target",
                 lambda: (lambda u: all(u.get(s) == "1" for s in SERVICES + ["rabbitmq"]))(up()), 90)
        ok(f"Prometheus scrapes every container: {sorted(up())}")
    except RuntimeError as e:
        fail("Prometheus scrapes every container", f"{e}: {up()}")


def step_live_check():
    """deploy/live_check.py against this stack's Prometheus."""
    venv = pathlib.Path(os.environ.get("MAILFLEET_DEPLOY_CACHE", pathlib.Path.home() / ".cache/mailfleet-deploy"))
    python = venv / "venv/bin/python"
    r = subprocess.run([str(python if python.exists() else sys.executable), str(ROOT / "deploy/live_check.py"),
                        str(ROOT), "--stack", "http://127.0.0.1:9090"], capture_output=True, text=True)
    print("\n".join("      " + l for l in (r.stdout + r.stderr).strip().splitlines()[-40:]))
    check("deploy/live_check.py --stack: every dashboard panel and alert against the stack's Prometheus",
          r.returncode == 0)


def crash_and_recover(service):
    """SIGKILL to the service's process (its PID 1) from the host, then wait
    until the restart policy has it running and ready again."""
    name = container(service)
    started = inspect(name, "{{.State.StartedAt}}")
    pid = int(inspect(name, "{{.State.Pid}}"))
    t0 = time.time()
    os.kill(pid, signal.SIGKILL)
    wait_for(f"{service} to restart",
             lambda: inspect(name, "{{.State.StartedAt}}") != started
             and inspect(name, "{{.State.Status}}") == "running" and ready(name), 120)
    back = time.time() - t0
    figures[f"{service} killed, ready again after"] = f"{back:.1f} s"
    ok(f"{service}: killed (SIGKILL), restarted by the restart policy and ready after {back:.1f} s")


def step_load_with_kills():
    load = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/e2e/clients/smtp_load.py"), "--port", "2525",
         "--count", str(LOAD), "--threads", "4", "--tag", "ct", "--attempts", "200",
         "--retry-pause", "0.5", "--rcpt", "load@example.test"],
        stdout=subprocess.PIPE, text=True)
    reports = []
    reader = threading.Thread(target=lambda: [reports.append(json.loads(l)) for l in load.stdout])
    reader.start()
    t0 = time.time()
    wait_for("100 messages sent", lambda: len(reports) >= 100 or load.poll() is not None, 300)
    figures["messages sent when delivery-worker was killed"] = len(reports)
    crash_and_recover("delivery-worker")
    wait_for("250 messages sent", lambda: len(reports) >= 250 or load.poll() is not None, 300)
    figures["messages sent when mailstore was killed"] = len(reports)
    crash_and_recover("mailstore")
    load.wait(timeout=600)
    reader.join()
    figures["load duration"] = f"{time.time() - t0:.1f} s"
    accepted = {r["i"] for r in reports if r["accepted"]}
    ambiguous = sum(1 for r in reports for c in r["data_codes"]
                    if isinstance(c, str) or 400 <= c < 500)
    figures["messages answered 250"] = f"{len(accepted)} of {LOAD}"
    figures["ambiguous attempts (4xx after data, lost connection)"] = ambiguous
    check(f"load: {len(reports)} messages reported, {len(accepted)} answered 250",
          len(reports) == LOAD and len(accepted) == LOAD,
          f"not accepted: {sorted(set(range(LOAD)) - accepted)[:20]}")

    def counts():
        c = {}
        for s in subjects("load@example.test"):
            m = re.fullmatch(r"ct message (\d+)", s)
            if m:
                c[int(m.group(1))] = c.get(int(m.group(1)), 0) + 1
        return c
    wait_for("every accepted message in the mailbox", lambda: accepted <= set(counts()), 300)
    settle()
    c = counts()
    lost = sorted(accepted - set(c))
    dup = []
    for r in reports:
        allowed = int(r["accepted"]) + sum(1 for x in r["data_codes"] if isinstance(x, str) or 400 <= x < 500)
        if c.get(r["i"], 0) > allowed:
            dup.append((r["i"], c[r["i"]], r["data_codes"]))
    unknown = sorted(set(c) - {r["i"] for r in reports})
    figures["exactly once"] = f"{len(accepted)} accepted, {len(lost)} lost, {len(dup)} duplicated beyond RFC 5321 6.1, {sum(c.values())} stored"
    check("exactly once: every message answered 250 stored once, none lost, nothing unknown",
          not lost and not dup and not unknown, f"lost {lost[:20]}, duplicated {dup[:5]}, unknown {unknown[:20]}")


def settle():
    """A marker sent after the load is stored, then the work queue is empty:
    a late duplicate of anything handed over before it would be there by now."""
    send("load@example.test", "ct marker")
    wait_for("the marker message", lambda: "ct marker" in subjects("load@example.test"), 120)

    def queue_empty():
        out = engine("exec", container("rabbitmq"), "rabbitmqctl", "-q", "list_queues", "name", "messages").stdout
        return not [l for l in out.splitlines()
                    if l.split("\t")[0].endswith(".delivery") and l.split("\t")[-1].strip() != "0"]
    wait_for("an empty work queue", queue_empty, 120)


def step_sigterm():
    send("ivy@example.test", "seed message 0")
    send("pat@example.test", "seed message 0")
    wait_for("the seed messages", lambda: subjects("ivy@example.test") and subjects("pat@example.test"), 60)
    # The SMTP transactions go to demo: ivy's IDLE session must see nothing
    # new before its BYE.
    sessions = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/e2e/clients/shutdown_sessions.py"), "2525", "1993", "1995",
         "ivy@example.test", "pat@example.test", PASSWORD, "demo@example.test"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = sessions.stdout.readline()
    if not check("sessions open before SIGTERM (SMTP idle/in DATA/stalled, IMAP selected/IDLE, POP3)",
                 line.strip() == "READY", line):
        sessions.kill()
        return
    stops = {}

    def stop(svc):
        name = container(svc)
        t0 = time.time()
        engine("stop", "--time", str(GRACE), name, check=False)
        stops[svc] = (time.time() - t0, inspect(name, "{{.State.ExitCode}}"))

    frontends = ["smtp-gateway", "imap-frontend", "pop3-frontend"]
    threads = [threading.Thread(target=stop, args=(s,)) for s in frontends]
    for t in threads:
        t.start()
    # The script reads each session's reply only now; the SMTP data's second
    # half goes out after the idle session got its 421, i.e. after SIGTERM.
    sessions.stdin.write("GO\n")
    sessions.stdin.flush()
    seen = json.loads(sessions.stdout.readline())
    sessions.wait()
    for t in threads:
        t.join()
    for svc in ["delivery-worker", "mailstore"]:
        stop(svc)
    check("SMTP session between commands: 421 4.3.2", seen["smtp_idle"].startswith("421 4.3.2"), seen["smtp_idle"])
    code = seen["smtp_data"][:3]
    check("SMTP transaction in DATA answered (250 or 4xx), never dropped",
          code == "250" or code.startswith("4"), seen["smtp_data"])
    check("stalled SMTP transaction in DATA: 421 when the drain deadline runs out",
          seen["smtp_stalled"].startswith("421 4.3.2"), seen["smtp_stalled"])
    for key in ["imap_selected", "imap_idle"]:
        check(f"{key}: * BYE, then closed", seen[key].startswith("* BYE") and seen[f"{key}_after"] == "",
              f"{seen[key]!r} / {seen[f'{key}_after']!r}")
    check("POP3 session: -ERR, then closed", seen["pop3"].startswith("-ERR") and seen["pop3_after"] == "",
          f"{seen['pop3']!r} / {seen['pop3_after']!r}")
    for svc in SERVICES:
        took, code = stops[svc]
        figures[f"{svc} SIGTERM to exit"] = f"{took:.1f} s, exit {code}"
        check(f"{svc}: exits 0 after SIGTERM within its {GRACE} s grace period ({took:.1f} s)",
              code == "0" and took < GRACE, f"exit code {code}, {took:.1f} s")


def main():
    steps = [step_ready, step_admin, step_mail, step_prometheus, step_live_check, step_load_with_kills,
             step_sigterm]
    for step in steps:
        try:
            step()
        except Exception as e:  # noqa: BLE001 (a broken step fails, the rest may still tell something)
            fail(step.__name__, f"{type(e).__name__}: {e}")
            if step in (step_admin,):
                break
    print("figures:")
    for k, v in figures.items():
        print(f"  {k}: {v}")
    print(f"container: {results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
