#!/usr/bin/env python3
"""Static checks of the observability files, run by deploy/check:

- every dashboard target and alert expression parses as PromQL (they are
  written into a rules file for `promtool check rules`);
- every metric they name is registered by a service (read from the Rust
  sources: `registry.register("name", ..)`, with the prefix of a
  `sub_registry_with_prefix`), with the suffix its type exposes
  (counter `_total`, histogram `_bucket`/`_sum`/`_count`, gauge none);
- names from outside mailfleet are limited to an allowlist (`up`, RabbitMQ's
  exporter).

Usage: check_metrics.py ROOT PROMTOOL   (exit 1 with a list of problems)
"""

import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml  # PyYAML: shipped with kubernetes-validate's environment

EXTERNAL = re.compile(r"^(up|rabbitmq_[a-z0-9_]+)$")
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "histogram_quantile", "vector", "scalar", "abs", "absent", "clamp_min", "clamp_max",
    "time", "le", "inf", "nan", "sum_over_time", "avg_over_time", "max_over_time",
    "min_over_time", "predict_linear", "label_replace", "sort", "sort_desc", "changes", "resets",
}
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def registered(root):
    """{exposed metric name: source file} for every metric the code registers."""
    names = {}
    for src in sorted(list(root.glob("services/*/src/**/*.rs")) + list(root.glob("crates/*/src/**/*.rs"))):
        text = src.read_text()
        if "prometheus_client" not in text and ".register(" not in text:
            continue
        # Field types, for the suffixes each metric gets when encoded.
        types = {}
        for field, ty in re.findall(r"^\s*pub(?:\([a-z]+\))?\s+(\w+)\s*:\s*(.+?),?\s*$", text, re.M):
            kind = ("histogram" if "Histogram" in ty else "counter" if "Counter" in ty
                    else "gauge" if "Gauge" in ty else None)
            if kind:
                types[field] = kind
        prefix_at = [(m.start(), m.group(1)) for m in re.finditer(r'sub_registry_with_prefix\(\s*"([a-z0-9_]+)"', text)]
        for m in re.finditer(r'\.register(?:_with_unit)?\(\s*"([a-z0-9_]+)"\s*,\s*"[^"]*"\s*,\s*([^;]*?)\)\s*;', text, re.S):
            name, arg = m.group(1), m.group(2)
            prefixes = [p for pos, p in prefix_at if pos < m.start()]
            if prefixes and not name.startswith("mailfleet_"):
                name = f"{prefixes[-1]}_{name}"
            field = re.search(r"\.(\w+)\.clone\(\)|^(\w+)\.clone\(\)|^(\w+)$", arg.strip())
            fname = next((g for g in field.groups() if g), None) if field else None
            kind = types.get(fname)
            rel = str(src.relative_to(root))
            if kind == "counter":
                names[f"{name}_total"] = rel
            elif kind == "histogram":
                for s in ("_bucket", "_sum", "_count"):
                    names[name + s] = rel
            elif kind == "gauge":
                names[name] = rel
            else:
                # Unknown type: accept any standard suffix rather than guess.
                for s in ("", "_total", "_bucket", "_sum", "_count"):
                    names[name + s] = rel
    return names


def strip_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_names(expr):
    """Metric names in a PromQL expression (identifiers not followed by '('
    and not label names, keywords or durations)."""
    e = strip_strings(expr)
    e = re.sub(r"\{[^}]*\}", "{}", e)                  # label matchers
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)                  # ranges
    out = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):
            continue
        if word.lower() in PROMQL_WORDS:
            continue
        out.add(word)
    return out


def expressions(root):
    """(where, expr) for every dashboard target and alert rule."""
    out = []
    for dash in sorted((root / "deploy/grafana/dashboards").glob("*.json")):
        data = json.loads(dash.read_text())
        for panel in data.get("panels", []):
            for t in panel.get("targets", []):
                out.append((f"{dash.name}: {panel['title']} [{t['refId']}]", t["expr"]))
    rules = yaml.safe_load((root / "deploy/prometheus/alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            out.append((f"alerts.yml: {rule.get('alert') or rule.get('record')}", rule["expr"]))
    return out


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    promtool = sys.argv[2]
    problems = []
    known = registered(root)
    if len(known) < 20:
        problems.append(f"found only {len(known)} registered metrics in the sources: is the extractor broken?")
    exprs = expressions(root)

    # PromQL syntax: every expression as a recording rule, Grafana variables filled in.
    rules = {"groups": [{"name": "dashboards", "rules": []}]}
    for i, (_, expr) in enumerate(exprs):
        for var, val in GRAFANA_VARS.items():
            expr = expr.replace(var, val)
        rules["groups"][0]["rules"].append({"record": f"check:expr_{i}", "expr": expr})
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
    res = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    if res.returncode != 0:
        problems.append("PromQL does not parse:\n" + res.stdout + res.stderr)

    used = 0
    for where, expr in exprs:
        for name in sorted(metric_names(expr)):
            used += 1
            if name.startswith("mailfleet_"):
                if name not in known:
                    problems.append(f"{where}: {name} is not registered by any service")
            elif not EXTERNAL.match(name):
                problems.append(f"{where}: {name} is neither a mailfleet metric nor an allowed external one")
    if problems:
        print("\n".join(problems))
        print(f"metric check: {len(problems)} problem(s)")
        sys.exit(1)
    print(f"metric check: {len(exprs)} expressions parse; {used} metric references, all registered "
          f"({len(known)} exposed series names in the sources)")


if __name__ == "__main__":
    main()
