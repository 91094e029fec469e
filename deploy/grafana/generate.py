#!/usr/bin/env python3
"""Writes the Grafana dashboards in deploy/grafana/dashboards/ from the panel
lists below, so every dashboard shares one layout and datasource. Edit here,
run `python3 deploy/grafana/generate.py`, commit both; deploy/check fails when
the JSON and this file disagree, and when a query names a metric no service
registers."""

import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}


def rate(metric, by="", match="", window="$__rate_interval"):
    sel = f"{metric}{{{match}}}" if match else metric
    agg = f"sum by ({by})" if by else "sum"
    return f"{agg} (rate({sel}[{window}]))"


def p(q, metric, match="", by=""):
    """Quantile q of a histogram, aggregated over instances."""
    sel = f"{metric}_bucket{{{match}}}" if match else f"{metric}_bucket"
    keys = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({keys}) (rate({sel}[$__rate_interval])))"


def tls_left(*metrics):
    """Seconds until the served certificate expires, per service instance."""
    return "min by (service, instance) (" + " or ".join(metrics) + ") - time()"


TLS_METRICS = ("mailfleet_smtp_tls_cert_expiry_timestamp_seconds",
               "mailfleet_imap_tls_cert_expiry_timestamp_seconds",
               "mailfleet_pop3_tls_cert_expiry_timestamp_seconds")
TLS_LEFT = tls_left(*TLS_METRICS)

# (title, unit, [(expr, legend)], kind); kind: timeseries or stat
OVERVIEW = [
    ("Mail in (accepted at DATA)", "reqps",
     [(rate("mailfleet_smtp_messages_accepted_total", "listener"), "{{listener}}")], "timeseries"),
    ("Delivered / deferred / bounced (recipient copies)", "reqps",
     [(rate("mailfleet_delivery_deliveries_total", match='outcome=~"stored|duplicate|relayed|remote"'), "delivered"),
      (rate("mailfleet_delivery_deferred_total"), "deferred (to a retry queue)"),
      (rate("mailfleet_delivery_bounced_total"), "bounced (failed for good)")], "timeseries"),
    ("Rejected by reason", "reqps",
     [(rate("mailfleet_smtp_replies_rejected_total", "code"), "SMTP {{code}}"),
      (rate("mailfleet_delivery_permanent_failures_total", "reason"), "delivery: {{reason}}")], "timeseries"),
    ("Queue backlog (accepted − consumed over the range)", "short",
     [("sum(increase(mailfleet_smtp_messages_accepted_total[$__range])) - sum(increase(mailfleet_delivery_jobs_consumed_total[$__range]))", "backlog")], "stat"),
    ("Broker queue depth", "short",
     [('sum by (queue) (rabbitmq_queue_messages{queue=~".+\\\\.delivery.*"})', "{{queue}}")], "timeseries"),
    ("Latency p99: DATA → 250, and mailstore Deliver", "s",
     [(p(0.99, "mailfleet_smtp_queue_duration_seconds"), "SMTP accept p99"),
      (p(0.50, "mailfleet_smtp_queue_duration_seconds"), "SMTP accept p50"),
      (p(0.99, "mailfleet_delivery_deliver_seconds"), "Deliver p99")], "timeseries"),
    ("End-to-end delivery latency (SMTP 250 → mailbox)", "s",
     [(p(0.5, "mailfleet_delivery_end_to_end_seconds"), "p50"),
      (p(0.99, "mailfleet_delivery_end_to_end_seconds"), "p99")], "timeseries"),
    ("Oldest deferred message age / jobs waiting for a retry", "s",
     [("max(mailfleet_delivery_oldest_deferred_seconds)", "oldest deferred message"),
      ("sum(mailfleet_delivery_deferred_jobs)", "deferred jobs (count)")], "timeseries"),
    ("TLS certificate: time left until expiry", "s",
     [(TLS_LEFT, "{{service}} {{instance}}")], "stat"),
    ("Sessions per protocol", "short",
     [("sum(mailfleet_smtp_sessions)", "SMTP"),
      ("sum(mailfleet_imap_sessions)", "IMAP"),
      ("sum(mailfleet_pop3_sessions)", "POP3")], "timeseries"),
    ("Authentication failures", "reqps",
     [(rate("mailfleet_store_auth_total", match='status="failed"'), "all protocols (mailstore)"),
      (rate("mailfleet_smtp_auth_attempts_total", "outcome"), "SMTP AUTH {{outcome}}"),
      (rate("mailfleet_pop3_auth_failures_total"), "POP3")], "timeseries"),
    ("Errors", "short",
     [(rate("mailfleet_delivery_deliver_errors_total"), "Deliver errors/s"),
      (rate("mailfleet_delivery_dead_lettered_total", "reason"), "dead-lettered {{reason}}/s"),
      (rate("mailfleet_delivery_consumer_restarts_total"), "consumer restarts/s"),
      ('count(up{service=~"(.+-)?(smtp-gateway|delivery-worker|mailstore|imap-frontend|pop3-frontend)"} == 0) or vector(0)', "services down")], "timeseries"),
]

SMTP = [
    ("Connections", "reqps",
     [(rate("mailfleet_smtp_connections_total", "listener"), "{{listener}}"),
      (rate("mailfleet_smtp_connections_refused_total", "listener"), "refused {{listener}}")], "timeseries"),
    ("Sessions open", "short", [("sum by (listener) (mailfleet_smtp_sessions)", "{{listener}}")], "timeseries"),
    ("Sessions ended by outcome", "reqps",
     [(rate("mailfleet_smtp_sessions_ended_total", "outcome"), "{{outcome}}")], "timeseries"),
    ("Messages accepted", "reqps",
     [(rate("mailfleet_smtp_messages_accepted_total", "listener"), "{{listener}}")], "timeseries"),
    ("Negative replies by code", "reqps",
     [(rate("mailfleet_smtp_replies_rejected_total", "code"), "{{code}}")], "timeseries"),
    ("Bytes received", "Bps",
     [(rate("mailfleet_smtp_received_bytes_total", "listener"), "{{listener}}")], "timeseries"),
    ("DATA → 250 latency", "s",
     [(p(0.5, "mailfleet_smtp_queue_duration_seconds"), "p50"),
      (p(0.99, "mailfleet_smtp_queue_duration_seconds"), "p99")], "timeseries"),
    ("TLS handshakes", "reqps",
     [(rate("mailfleet_smtp_tls_handshakes_total", "outcome"), "{{outcome}}")], "timeseries"),
    ("AUTH attempts", "reqps",
     [(rate("mailfleet_smtp_auth_attempts_total", "outcome"), "{{outcome}}")], "timeseries"),
    ("TLS certificate: time left until expiry", "s",
     [(tls_left(TLS_METRICS[0]), "{{instance}}")], "stat"),
    ("Spam checks (rspamd) by result", "reqps",
     [(rate("mailfleet_smtp_spam_check_total", "result"), "{{result}}"),
      (rate("mailfleet_smtp_spam_check_errors_total"), "rspamd did not answer")], "timeseries"),
]

DELIVERY = [
    ("Jobs consumed", "reqps", [(rate("mailfleet_delivery_jobs_consumed_total"), "consumed")], "timeseries"),
    ("Jobs settled by outcome", "reqps", [(rate("mailfleet_delivery_jobs_total", "outcome"), "{{outcome}}")], "timeseries"),
    ("Recipient copies by outcome", "reqps",
     [(rate("mailfleet_delivery_deliveries_total", "outcome"), "{{outcome}}")], "timeseries"),
    ("Permanent failures by reason", "reqps",
     [(rate("mailfleet_delivery_permanent_failures_total", "reason"), "{{reason}}")], "timeseries"),
    ("Dead-lettered by reason", "reqps",
     [(rate("mailfleet_delivery_dead_lettered_total", "reason"), "{{reason}}")], "timeseries"),
    ("Deliver batch size", "short",
     [(p(0.5, "mailfleet_delivery_batch_size"), "p50"), (p(0.99, "mailfleet_delivery_batch_size"), "p99")], "timeseries"),
    ("Deliver call latency", "s",
     [(p(0.5, "mailfleet_delivery_deliver_seconds"), "p50"), (p(0.99, "mailfleet_delivery_deliver_seconds"), "p99")], "timeseries"),
    ("Deliver errors and consumer restarts", "reqps",
     [(rate("mailfleet_delivery_deliver_errors_total"), "Deliver errors"),
      (rate("mailfleet_delivery_consumer_restarts_total"), "consumer restarts")], "timeseries"),
    ("Deferred and bounced recipients", "reqps",
     [(rate("mailfleet_delivery_deferred_total"), "deferred"), (rate("mailfleet_delivery_bounced_total"), "bounced"),
      (rate("mailfleet_delivery_stale_copies_total", "reason"), "stale retry copy: {{reason}}")], "timeseries"),
    ("Processing attempts", "reqps", [(rate("mailfleet_delivery_attempts_total", "outcome"), "{{outcome}}")], "timeseries"),
    ("Relay to remote MX", "reqps",
     [(rate("mailfleet_delivery_relay_attempts_total", "result"), "{{result}}"),
      (rate("mailfleet_delivery_relay_tls_total", "tls"), "TLS: {{tls}}")], "timeseries"),
    ("Relay latency", "s", [(p(0.99, "mailfleet_delivery_relay_seconds"), "p99")], "timeseries"),
    ("End-to-end latency (SMTP 250 → stored in the mailbox)", "s",
     [(p(0.5, "mailfleet_delivery_end_to_end_seconds"), "p50"),
      (p(0.99, "mailfleet_delivery_end_to_end_seconds"), "p99")], "timeseries"),
    ("Retry queue: oldest deferred message age", "s",
     [("max(mailfleet_delivery_oldest_deferred_seconds)", "oldest")], "stat"),
    ("Retry queue: jobs waiting", "short", [("sum(mailfleet_delivery_deferred_jobs)", "jobs")], "stat"),
    ("Replicas consuming", "short", [("sum(mailfleet_delivery_consuming)", "consuming")], "stat"),
    ("Spam lessons (Junk moves) by result", "reqps",
     [(rate("mailfleet_delivery_spam_lessons_total", "result"), "{{result}}")], "timeseries"),
]

STORE = [
    ("Deliveries by status", "reqps", [(rate("mailfleet_store_deliveries_total", "status"), "{{status}}")], "timeseries"),
    ("Deliver batch size", "short",
     [(p(0.5, "mailfleet_store_deliver_batch_size"), "p50"), (p(0.99, "mailfleet_store_deliver_batch_size"), "p99")], "timeseries"),
    ("Deliver transaction latency", "s",
     [(p(0.5, "mailfleet_store_deliver_seconds"), "p50"), (p(0.99, "mailfleet_store_deliver_seconds"), "p99")], "timeseries"),
    ("Authentication by result", "reqps", [(rate("mailfleet_store_auth_total", "status"), "{{status}}")], "timeseries"),
]

IMAP = [
    ("Connections", "reqps", [(rate("mailfleet_imap_connections_total", "tls"), "implicit TLS: {{tls}}")], "timeseries"),
    ("Sessions open / in IDLE", "short",
     [("sum(mailfleet_imap_sessions)", "sessions"), ("sum(mailfleet_imap_idle_sessions)", "IDLE")], "timeseries"),
    ("Commands by name", "reqps", [(rate("mailfleet_imap_commands_total", "command"), "{{command}}")], "timeseries"),
    ("Commands by result", "reqps", [(rate("mailfleet_imap_commands_total", "result"), "{{result}}")], "timeseries"),
    ("Command latency", "s",
     [(p(0.5, "mailfleet_imap_command_seconds"), "p50"), (p(0.99, "mailfleet_imap_command_seconds"), "p99")], "timeseries"),
    ("Body bytes sent", "Bps", [(rate("mailfleet_imap_body_bytes_out_total"), "bytes")], "timeseries"),
    ("STARTTLS upgrades", "reqps", [(rate("mailfleet_imap_starttls_total"), "STARTTLS")], "timeseries"),
    ("TLS certificate: time left until expiry", "s",
     [(tls_left(TLS_METRICS[1]), "{{instance}}")], "stat"),
]

POP3 = [
    ("Connections", "reqps", [(rate("mailfleet_pop3_connections_total"), "connections")], "timeseries"),
    ("Sessions open", "short", [("sum(mailfleet_pop3_sessions)", "sessions")], "timeseries"),
    ("Logins and failures", "reqps",
     [(rate("mailfleet_pop3_logins_total"), "logins"), (rate("mailfleet_pop3_auth_failures_total"), "auth failures"),
      (rate("mailfleet_pop3_lock_conflicts_total"), "maildrop lock conflicts")], "timeseries"),
    ("Commands", "reqps", [(rate("mailfleet_pop3_commands_total", "command"), "{{command}}")], "timeseries"),
    ("Bytes retrieved", "Bps", [(rate("mailfleet_pop3_retrieved_bytes_total"), "RETR/TOP bytes")], "timeseries"),
    ("Messages deleted", "reqps", [(rate("mailfleet_pop3_deleted_messages_total"), "deleted")], "timeseries"),
    ("TLS certificate: time left until expiry", "s",
     [(tls_left(TLS_METRICS[2]), "{{instance}}")], "stat"),
]

DASHBOARDS = [
    ("mailfleet-overview", "mailfleet / overview", OVERVIEW),
    ("mailfleet-smtp-gateway", "mailfleet / smtp-gateway", SMTP),
    ("mailfleet-delivery-worker", "mailfleet / delivery-worker", DELIVERY),
    ("mailfleet-mailstore", "mailfleet / mailstore", STORE),
    ("mailfleet-imap-frontend", "mailfleet / imap-frontend", IMAP),
    ("mailfleet-pop3-frontend", "mailfleet / pop3-frontend", POP3),
]


def panel(i, title, unit, targets, kind):
    return {
        "id": i + 1,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [
            {"refId": chr(ord("A") + j), "datasource": DS, "expr": expr, "legendFormat": legend}
            for j, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard(uid, title, panels):
    return {
        "uid": uid,
        "title": title,
        "tags": ["mailfleet"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "type": "datasource", "query": "prometheus",
            "label": "Data source", "current": {}, "hide": 0,
        }]},
        "links": [{"title": "mailfleet", "type": "dashboards", "tags": ["mailfleet"], "asDropdown": True}],
        "panels": [panel(i, *spec) for i, spec in enumerate(panels)],
    }


def render():
    return {f"{uid}.json": json.dumps(dashboard(uid, title, panels), indent=2) + "\n"
            for uid, title, panels in DASHBOARDS}


if __name__ == "__main__":
    files = render()
    if sys.argv[1:] == ["--check"]:
        stale = [n for n, text in files.items()
                 if not (OUT / n).exists() or (OUT / n).read_text() != text]
        extra = [p.name for p in OUT.glob("*.json") if p.name not in files]
        if stale or extra:
            sys.exit(f"dashboards out of date with generate.py: {stale + extra}")
        sys.exit(0)
    OUT.mkdir(exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
