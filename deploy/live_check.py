#!/usr/bin/env python3
"""Live check of the dashboards and alerts against a running stack.

Starts `mailfleet dev` on an offset port range with its own Postgres database
and RabbitMQ vhost, starts a real Prometheus (Debian's) scraping every
service's /metrics every second, drives traffic with real clients (SMTP
accepted and rejected, IMAP and POP3 logins good and bad, reads, deletes),
then runs every PromQL expression of every dashboard panel and alert through
Prometheus's HTTP API. Each must evaluate; each panel must return data,
except the few listed in NEEDS_EVENT whose metrics only exist after an event
this test does not cause (each with the reason).

It also receives the services' OTLP spans (a small gRPC receiver here) and
checks that one message's spans from smtp-gateway, delivery-worker and
mailstore form one trace with intact parent links.

With --stack PROMETHEUS_URL instead of a binary it checks a stack that is
already running on the dev ports, the compose stack of deploy/container/up
(demo@example.test with password demo must exist there): the same traffic
and queries, through that stack's own Prometheus, which scrapes every
container. The health checks and the trace check are left to
deploy/container/check_stack.py and the compose stack's Jaeger.

Usage: live_check.py ROOT MAILFLEET_BIN          (prints "N passed, N failed")
       live_check.py ROOT --stack PROMETHEUS_URL
"""

import imaplib
import json
import os
import pathlib
import poplib
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

OFFSET = int(os.environ.get("MAILFLEET_LIVE_PORT_OFFSET", "370"))
SERVICES = {"smtp-gateway": 9101, "delivery-worker": 9102, "mailstore": 9103,
            "imap-frontend": 9104, "pop3-frontend": 9105}
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "10m"}
# Panels whose every series appears only after an event outside this test.
NEEDS_EVENT = {
    # Every other panel has data from start-up: its labelled counters are
    # created at 0 for their known label values.
    "Broker queue depth": "RabbitMQ's exporter is scraped in docker-compose (live_check.py --stack), not here",
}


class OtlpReceiver:
    """A minimal OTLP/gRPC trace receiver: keeps every span it is sent."""

    def __init__(self):
        import threading
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self.spans, self.lock = [], threading.Lock()
        receiver = self

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                with receiver.lock:
                    for rs in request.resource_spans:
                        service = next((a.value.string_value for a in rs.resource.attributes
                                        if a.key == "service.name"), "")
                        for ss in rs.scope_spans:
                            for sp in ss.spans:
                                attrs = {a.key: a.value.string_value for a in sp.attributes}
                                receiver.spans.append({
                                    "service": service, "name": sp.name, "trace": sp.trace_id.hex(),
                                    "id": sp.span_id.hex(), "parent": sp.parent_span_id.hex(), "attrs": attrs})
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def snapshot(self):
        with self.lock:
            return list(self.spans)


def one_trace(receiver):
    """(passed, failed, messages): a message's spans from smtp-gateway,
    delivery-worker and mailstore share one trace with intact parent links."""
    deadline = time.time() + 30
    problems = []
    while time.time() < deadline:
        spans = receiver.snapshot()
        roots = [s for s in spans if s["service"] == "smtp-gateway" and s["name"] == "smtp.message"]
        problems = ["no smtp.message span from smtp-gateway"] if not roots else []
        for root in roots:
            trace = [s for s in spans if s["trace"] == root["trace"]]
            by_id = {s["id"]: s for s in trace}
            store = [s for s in trace if s["service"] == "mailstore" and s["name"].endswith("/Deliver")]
            worker = [s for s in trace if s["service"] == "delivery-worker"]
            if not store or not worker:
                problems.append(f"trace {root['trace']}: services {sorted({s['service'] for s in trace})}")
                continue
            # Walk from the mailstore Deliver span up to the gateway's root.
            chain, s = [], store[0]
            while s is not None:
                chain.append(s["service"])
                s = by_id.get(s["parent"]) if s["parent"] else None
            if chain[-1] == "smtp-gateway" and "delivery-worker" in chain:
                return [f"trace {root['trace']} (job {root['attrs'].get('job_id', '?')}): "
                        f"{' <- '.join(reversed(chain))}"], []
            problems.append(f"trace {root['trace']}: broken parent chain {chain}")
        time.sleep(1)
    return [], problems


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, probe, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if probe():
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def http_ok(url):
    with urllib.request.urlopen(url, timeout=3) as r:
        return r.status == 200


def psql(sql):
    subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", sql],
                   check=True, capture_output=True)


def rabbitmqctl(*args):
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True)


def tls_step(results, what, step):
    """A TLS step the stack must serve (IMAP STARTTLS, IMAPS, POP3 STLS):
    its failure is a failure of the check, never a skip."""
    try:
        step()
        results.append((what, None))
    except Exception as e:  # noqa: BLE001 (any error fails the step)
        results.append((what, f"{type(e).__name__}: {e}"))


def imaps_login(port):
    with imaplib.IMAP4_SSL("127.0.0.1", port(1993), timeout=30,
                           ssl_context=ssl._create_unverified_context()) as m:
        m.login("demo@example.test", "demo")
        m.logout()


def traffic(port):
    """Mail in, rejections, logins good and bad, reads and deletes. Returns
    the TLS steps as (what, error or None)."""
    tls = []
    msg = ("From: live@example.org\r\nTo: demo@example.test\r\nSubject: live check {n}\r\n"
           "Message-ID: <live-{n}@example.org>\r\n\r\nHello {n}.\r\n")
    with smtplib.SMTP("127.0.0.1", port(2525), timeout=30) as s:
        for n in range(5):
            s.sendmail("live@example.org", ["demo@example.test"], msg.format(n=n))
        try:
            s.sendmail("live@example.org", ["nobody@example.test"], msg.format(n="x"))
        except smtplib.SMTPRecipientsRefused:
            pass
    with smtplib.SMTP("127.0.0.1", port(2587), timeout=30) as s:
        s.starttls(context=ssl._create_unverified_context())
        try:
            s.login("demo@example.test", "wrong-password")
        except smtplib.SMTPAuthenticationError:
            pass
        s.login("demo@example.test", "demo")
    # Wait until the mail is visible over IMAP.
    def visible():
        with imaplib.IMAP4("127.0.0.1", port(1143), timeout=30) as m:
            m.login("demo@example.test", "demo")
            typ, data = m.select("INBOX")
            return typ == "OK" and int(data[0]) >= 5
    wait_for("the messages in the mailbox", visible, 60)
    with imaplib.IMAP4("127.0.0.1", port(1143), timeout=30) as m:
        try:
            m.login("demo@example.test", "wrong-password")
        except imaplib.IMAP4.error:
            pass
    with imaplib.IMAP4("127.0.0.1", port(1143), timeout=30) as m:
        tls_step(tls, "IMAP STARTTLS", lambda: m.starttls(ssl._create_unverified_context()))
        m.login("demo@example.test", "demo")
        m.select("INBOX")
        m.fetch("1:*", "(FLAGS BODY.PEEK[])")
        m.logout()
    tls_step(tls, "IMAPS login", lambda: imaps_login(port))
    p = poplib.POP3("127.0.0.1", port(1110), timeout=30)
    try:
        p.user("demo@example.test")
        p.pass_("wrong-password")
    except poplib.error_proto:
        pass
    p.quit()
    p = poplib.POP3("127.0.0.1", port(1110), timeout=30)
    tls_step(tls, "POP3 STLS", lambda: p.stls(ssl._create_unverified_context()))
    p.user("demo@example.test")
    p.pass_("demo")
    p.retr(1)
    p.dele(1)
    p.quit()
    return tls


def queries(root):
    sys.path.insert(0, str(root / "deploy"))
    from check_metrics import expressions  # noqa: E402
    return expressions(root)


def evaluate(root, api, needs_event):
    """(passed, failed): every panel and alert expression evaluates through
    Prometheus's API; every panel has data unless listed in needs_event."""
    passed, failed = 0, 0
    panels = {}
    for where, expr in queries(root):
        q = expr
        for var, val in GRAFANA_VARS.items():
            q = q.replace(var, val)
        try:
            with urllib.request.urlopen(f"{api}/query?query=" + urllib.parse.quote(q), timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        if body.get("status") != "success":
            failed += 1
            print(f"FAIL  {where}: {body.get('error')}")
            continue
        passed += 1
        has = bool(body["data"]["result"])
        if where.startswith("alerts.yml"):
            continue
        panel = where.rsplit(" [", 1)[0]
        panels[panel] = panels.get(panel, False) or has
    for panel, has in sorted(panels.items()):
        title = panel.split(": ", 1)[1]
        if has:
            passed += 1
        elif title in needs_event:
            print(f"skip  {panel}: no data ({needs_event[title]})")
        else:
            failed += 1
            print(f"FAIL  {panel}: returns no data after the traffic")
    print(f"live: {len(panels)} panels and every alert evaluated against a real Prometheus")
    return passed, failed


def scraped(api, want):
    with urllib.request.urlopen(f"{api}/query?query=" + urllib.parse.quote('count(up{job="mailfleet"} == 1)')) as r:
        res = json.load(r)["data"]["result"]
        return res and int(res[0]["value"][1]) == want


def main_stack(root, prometheus_url):
    """Against a running stack on the dev ports and its own Prometheus."""
    api = prometheus_url.rstrip("/") + "/api/v1"
    passed, failed = 0, 0
    wait_for("every service scraped", lambda: scraped(api, len(SERVICES)), 90)
    for what, error in traffic(lambda p: p):
        if error is None:
            passed += 1
            print(f"ok    {what}")
        else:
            failed += 1
            print(f"FAIL  {what}: {error}")
    # The stack scrapes every 15 s: two scrapes after the traffic, so rates
    # over 1m see the increase.
    with urllib.request.urlopen(f"{api}/query?query=time()") as r:
        after = float(json.load(r)["data"]["result"][0])
    query = "min(timestamp(up{job=\"mailfleet\"}))"
    wait_for("two scrapes after the traffic", lambda: float(json.load(urllib.request.urlopen(
        f"{api}/query?query=" + urllib.parse.quote(query)))["data"]["result"][0]["value"][1]) > after + 16, 90)
    # Every panel has data there, the broker's queue depth included.
    p, f = evaluate(root, api, {})
    passed, failed = passed + p, failed + f
    print(f"live: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    if sys.argv[2] == "--stack":
        return main_stack(root, sys.argv[3])
    binary = pathlib.Path(sys.argv[2]).resolve()
    prometheus = shutil.which("prometheus")
    if not prometheus:
        raise SystemExit("prometheus (Debian package) is not installed")
    port = lambda p: p + OFFSET  # noqa: E731
    tag = f"mf_live_{os.getpid()}"
    work = pathlib.Path(tempfile.mkdtemp(prefix="mf-live-"))
    procs = []
    passed, failed = 0, 0
    psql(f"CREATE DATABASE {tag}")
    rabbitmqctl("add_vhost", tag)
    rabbitmqctl("set_permissions", "-p", tag, "guest", ".*", ".*", ".*")
    try:
        env = dict(os.environ, HOME=str(work), MAILFLEET_LOG="warn",
                   MAILFLEET_DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{tag}",
                   MAILFLEET_AMQP_URL=f"amqp://guest:guest@127.0.0.1:5672/{tag}")
        receiver = OtlpReceiver()
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
                   OTEL_BSP_SCHEDULE_DELAY="500", MAILFLEET_LOG="info")
        env.pop("OTEL_SERVICE_NAME", None)
        dev = subprocess.Popen([str(binary), "dev", "--port-offset", str(OFFSET)], cwd=work, env=env,
                               stdout=open(work / "dev.out", "w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
        procs.append(dev)
        wait_for("mailfleet dev", lambda: "mailfleet dev is ready." in (work / "dev.out").read_text() or dev.poll() is not None, 180)
        if dev.poll() is not None:
            raise SystemExit("mailfleet dev exited:\n" + (work / "dev.out").read_text()[-3000:])

        prom_port = free_port()
        targets = "\n".join(
            f"      - targets: ['127.0.0.1:{port(p)}']\n        labels: {{service: {name}}}"
            for name, p in SERVICES.items())
        (work / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{root / 'deploy/prometheus/alerts.yml'}']\n"
            "scrape_configs:\n  - job_name: mailfleet\n    static_configs:\n" + targets + "\n")
        prom = subprocess.Popen(
            [prometheus, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=open(work / "prom.out", "w"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(prom)
        api = f"http://127.0.0.1:{prom_port}/api/v1"
        wait_for("Prometheus", lambda: http_ok(f"http://127.0.0.1:{prom_port}/-/ready"), 60)

        # The container health check (the image has no shell and no curl).
        for name, p in SERVICES.items():
            rc = subprocess.run([str(binary), "health", "--addr", f"127.0.0.1:{port(p)}"],
                                capture_output=True, text=True)
            if rc.returncode == 0:
                passed += 1
            else:
                failed += 1
                print(f"FAIL  mailfleet health --addr :{port(p)} ({name}): {rc.stderr.strip()}")

        for what, error in traffic(port):
            if error is None:
                passed += 1
                print(f"ok    {what}")
            else:
                failed += 1
                print(f"FAIL  {what}: {error}")
        # A few scrapes after the traffic, so rates over 1m see the increase.
        wait_for("every service scraped", lambda: scraped(api, len(SERVICES)), 60)
        time.sleep(5)

        p, f = evaluate(root, api, NEEDS_EVENT)
        passed, failed = passed + p, failed + f
        good, bad = one_trace(receiver)
        for line in good:
            passed += 1
            print(f"ok    one trace per message: {line}")
        if bad:
            failed += 1
            print("FAIL  one trace per message: " + "; ".join(bad[:5]))
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=60)
            except Exception:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except Exception:
                    pass
        try:
            psql(f"DROP DATABASE IF EXISTS {tag} WITH (FORCE)")
            rabbitmqctl("delete_vhost", tag)
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(work, ignore_errors=True)
    print(f"live: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
