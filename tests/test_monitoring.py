"""Monitoring as code (monitoring/): promtool on the config and rules, a firing and a quiet case for every alert, and
every series, field and file the dashboards and configs name checked against what the API really exports and logs."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from acceptability.serving.metrics import Metrics
from acceptability.serving.predlog import records

MONITORING = ROOT / "monitoring"
PROMETHEUS = MONITORING / "prometheus"
RULES = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
DASHBOARD = json.loads((MONITORING / "grafana/dashboards/cola-api.json").read_text())
PROMQL_WORDS = {
    "sum", "by", "rate", "max", "min", "count", "abs", "on", "ignoring", "group_left", "and", "or", "unless",
    "histogram_quantile", "max_over_time", "le", "job", "label", "quantity", "status", "path", "version", "variant",
}  # fmt: skip


def exported_series() -> set[str]:
    """Every series name the API's /metrics can expose (histograms as _bucket, _sum and _count)."""
    names = set()
    for collector in Metrics().registry._collector_to_names:
        for family in collector.describe() or collector.collect():
            names |= {sample.name for sample in family.samples} or {family.name}
            if family.type == "histogram":
                names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
            if family.type == "counter":
                names.add(f"{family.name}_total")
    return names


def recorded() -> set[str]:
    return {rule["record"] for group in RULES for rule in group["rules"] if "record" in rule}


def alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for group in RULES for rule in group["rules"] if "alert" in rule}


def series_in(expr: str) -> set[str]:
    """The series names an expression reads: identifiers outside label matchers, strings and ranges."""
    bare = re.sub(r"\{[^}]*\}|\"[^\"]*\"|\[[^\]]*\]", " ", expr)
    bare = re.sub(r"\b(?:by|on|ignoring|without|group_left|group_right)\s*\([^)]*\)", " ", bare)  # label lists
    return {word for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare) if word not in PROMQL_WORDS}


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in DASHBOARD["panels"] for target in panel["targets"]]


@pytest.mark.promtool
def test_promtool_checks_the_config_and_the_rules(tools):
    result = subprocess.run(["promtool", "check", "config", "prometheus.yml"], cwd=PROMETHEUS, capture_output=True)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    out = subprocess.run(["promtool", "check", "rules", "rules.yml"], cwd=PROMETHEUS, capture_output=True, text=True)
    assert out.returncode == 0 and f"SUCCESS: {sum(len(g['rules']) for g in RULES)} rules found" in out.stdout


@pytest.mark.promtool
def test_promtool_rule_tests_pass(tools):
    out = subprocess.run(
        ["promtool", "test", "rules", "rules_test.yml"], cwd=PROMETHEUS, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases = yaml.safe_load((PROMETHEUS / "rules_test.yml").read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    firing = {check["alertname"] for check in checks if check["exp_alerts"]}
    quiet = {check["alertname"] for check in checks if not check["exp_alerts"]}
    assert firing == quiet == set(alerts())
    assert {"page", "warning", "info"} == {rule["labels"]["severity"] for rule in alerts().values()}


def test_rules_and_dashboard_read_only_series_the_api_exports():
    known = exported_series() | recorded() | {"up"}
    for rule in (rule for group in RULES for rule in group["rules"]):
        assert series_in(rule["expr"]) <= known, (rule.get("record") or rule["alert"], series_in(rule["expr"]) - known)
    for expr in dashboard_exprs():
        assert series_in(expr) <= known, (expr, series_in(expr) - known)
    assert series_in('sum by (job, le) (rate(cola_x_bucket{path="/v1/predict"}[5m])) / on (job) cola:y') == {
        "cola_x_bucket",
        "cola:y",
    }


def test_dashboard_covers_what_on_call_needs():
    used = set().union(*(series_in(expr) for expr in dashboard_exprs()))
    for needed in (
        "cola_http_requests_total",
        "cola:http_server_errors:ratio_rate5m",
        "cola:predict_slow:ratio_rate5m",
        "cola:queue_saturation",
        "cola_ready",
        "cola_model_info",
        "cola:predicted_share:rate30m",
        "cola:baseline_label_share",
        "cola:confidence_mean:rate30m",
        "cola:tokens_mean:rate30m",
    ):
        assert needed in used
    assert {panel["datasource"]["uid"] for panel in DASHBOARD["panels"]} == {"prometheus"}
    datasource = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"
    assert len({panel["id"] for panel in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])


def test_no_label_can_carry_sentence_text():
    """Label names are a closed set, and none of them takes a sentence (`reason` is one of selfcheck.REASONS)."""
    labels = set()
    for collector in Metrics().registry._collector_to_names:
        labels |= set(getattr(collector, "_labelnames", ()))
    assert labels == {"method", "path", "status", "label", "version", "variant", "reason", "quantity", "le"}


def logged_fields(log_text: bool) -> set[str]:
    prediction = {"label": "acceptable", "probabilities": {"unacceptable": 0.1, "acceptable": 0.9}}
    record = records(["The cat sat."], [5], [prediction], "req-1", "int8-abc", 0.002, log_text)[0]

    def flatten(value: dict, prefix: str = "") -> set[str]:
        out = set()
        for key, item in value.items():
            out |= flatten(item, f"{prefix}{key}.") if isinstance(item, dict) else {f"{prefix}{key}"}
        return out

    return flatten(record)


def kibana_fields() -> set[str]:
    fields = set()
    for line in (MONITORING / "elastic/kibana-objects.ndjson").read_text().splitlines():
        obj = json.loads(line)
        attributes = obj["attributes"]
        if obj["type"] == "index-pattern":
            fields.add(attributes["timeFieldName"])
        for agg in json.loads(attributes.get("visState", "{}")).get("aggs", []):
            if "field" in agg["params"]:
                fields.add(agg["params"]["field"])
    return fields


def test_kibana_objects_parse_and_use_only_logged_fields():
    objects = [json.loads(line) for line in (MONITORING / "elastic/kibana-objects.ndjson").read_text().splitlines()]
    ids = {obj["id"] for obj in objects}
    assert all(ref["id"] in ids for obj in objects for ref in obj["references"])  # nothing points outside the file
    assert {obj["type"] for obj in objects} == {"index-pattern", "visualization", "dashboard"}
    used = kibana_fields()
    assert used <= logged_fields(log_text=False), used - logged_fields(log_text=False)
    assert {"cola.label", "cola.confidence", "event.duration", "service.version", "@timestamp"} <= used


def test_filebeat_reads_the_log_as_ecs_and_drops_text_unless_opted_in():
    config = yaml.safe_load((MONITORING / "elastic/filebeat.yml").read_text())
    (stream,) = config["filebeat.inputs"]
    assert stream["type"] == "filestream" and stream["parsers"][0]["ndjson"]["target"] == ""
    (drop,) = config["processors"]
    assert drop["drop_fields"]["fields"] == ["cola.sentence.content"]
    assert logged_fields(log_text=True) - logged_fields(log_text=False) == {"cola.sentence.content"}


def test_ecs_field_table_lists_exactly_what_the_api_logs():
    text = (ROOT / "docs/monitoring.md").read_text()
    table = re.search(r"<!-- ecs-fields -->(.*?)<!-- /ecs-fields -->", text, flags=re.S).group(1)
    documented = set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.M))
    assert documented == logged_fields(log_text=True)


def test_compose_mounts_files_that_exist():
    compose = yaml.safe_load((MONITORING / "compose.yaml").read_text())
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (MONITORING / source).exists(), source
            assert volume.endswith(":ro")
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:")  # nothing published beyond the machine by default
    assert (MONITORING / compose["services"]["api"]["build"]["context"] / "Dockerfile").is_file()
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["job_name"] == "cola-api" and scrape["static_configs"][0]["targets"] == ["api:8080"]


def test_the_card_baseline_keys_are_the_histogram_bounds(exported):
    """The baseline gauges join the live histograms on `le`: the card writes the bounds as prometheus_client does."""
    from prometheus_client import generate_latest

    card = json.loads(Path(exported / "models/onnx/model_card.json").read_text())
    metrics = Metrics()
    metrics.confidence.observe(0.9)
    metrics.tokens.observe(9)
    exposed = generate_latest(metrics.registry).decode()
    for variant, baseline in card["drift_baseline"].items():
        assert abs(sum(baseline["label_share"].values()) - 1) < 1e-9, variant
        for quantity, family in (("confidence", "cola_prediction_confidence"), ("tokens", "cola_sentence_tokens")):
            shares = list(baseline[quantity]["le"].values())
            assert shares == sorted(shares) and shares[-1] == 1.0
            for bound in baseline[quantity]["le"]:
                assert f'{family}_bucket{{le="{bound}"}}' in exposed


def test_the_alert_table_lists_every_rule_with_its_for_duration():
    """docs/monitoring.md's table against rules.yml: the same alerts, and each "for N min" is the rule's `for`."""
    text = (ROOT / "docs/monitoring.md").read_text()
    rows = dict(re.findall(r"^\| `(CoLA\w+)` \| (.*?) \|", text, flags=re.M))
    rules = {
        rule["alert"]: rule.get("for")
        for group in yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert set(rows) == set(rules)
    for name, fires_when in rows.items():
        stated = re.search(r"for (\d+) min$", fires_when)
        assert (f"{stated.group(1)}m" if stated else None) == rules[name], name
