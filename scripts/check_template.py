#!/usr/bin/env python3
"""What cfn-lint cannot check in template.yaml: its event source mapping in each scaling mode,
the ranges AWS gives for the scaling parameters, and the dashboard's body.

    check_template.py TRANSFORMED.json OUT_DIR

TRANSFORMED.json is template.yaml after the SAM transform (scripts/sam_to_cfn.py). For each
value of ScalingMode the template is rendered as CloudFormation would deploy it with that value
and the other parameters' defaults (every Fn::If decided, AWS::NoValue dropped) into
OUT_DIR/<mode>.json, for cfn-lint to check too, and its mapping is checked: provisioned pollers
and no MaximumConcurrency in the provisioned mode, the reverse in the on-demand mode (AWS refuses
both together), and the mapping's own metrics turned on in both. Plain Python: no AWS call.
"""

import json
import re
import sys
from pathlib import Path

# AWS's ranges for the scaling parameters of an SQS event source mapping, which the template's
# MinValue and MaxValue must be (docs/poolers-and-scaling.md cites them):
# MaximumConcurrency: https://docs.aws.amazon.com/lambda/latest/api/API_ScalingConfig.html
# the pollers, for SQS: https://docs.aws.amazon.com/lambda/latest/api/API_ProvisionedPollerConfig.html
AWS_RANGES = {
    "MaximumConcurrency": (2, 1000),
    "MinimumPollers": (2, 200),
    "MaximumPollers": (2, 10000),
}

MODES = ("on-demand", "provisioned")
DEFAULT_MODE = "on-demand"

# The event source mapping metrics Lambda emits for an SQS mapping with MetricsConfig EventCount
# (FilteredOutEventCount too, which stays 0 without a filter), and in the provisioned mode
# ProvisionedPollers: https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html
MAPPING_METRICS = ("PolledEventCount", "InvokedEventCount", "DeletedEventCount", "FailedInvokeEventCount", "ProvisionedPollers")

NO_VALUE = {"Ref": "AWS::NoValue"}


def condition_value(expression, conditions, parameters):
    """The value of a condition's expression, the parameters taking the given values."""
    if isinstance(expression, dict) and len(expression) == 1:
        (function, argument), = expression.items()
        if function == "Ref":
            if argument not in parameters:
                raise ValueError(f"a condition reads {argument}, which has no value to render with")
            return parameters[argument]
        if function == "Condition":
            return condition_value(conditions[argument], conditions, parameters)
        values = [condition_value(a, conditions, parameters) for a in argument]
        if function == "Fn::Equals":
            return str(values[0]) == str(values[1])
        if function == "Fn::Not":
            return not values[0]
        if function == "Fn::And":
            return all(values)
        if function == "Fn::Or":
            return any(values)
        raise ValueError(f"a condition uses {function}, which this renderer does not know")
    return expression


def decided(node, truth):
    """The node with every Fn::If decided and AWS::NoValue dropped from objects and lists."""
    if isinstance(node, dict):
        if len(node) == 1 and "Fn::If" in node:
            name, when_true, when_false = node["Fn::If"]
            return decided(when_true if truth[name] else when_false, truth)
        out = {}
        for key, value in node.items():
            value = decided(value, truth)
            if value != NO_VALUE:
                out[key] = value
        return out
    if isinstance(node, list):
        return [v for v in (decided(v, truth) for v in node) if v != NO_VALUE]
    return node


def rendered(template, values):
    """The template as CloudFormation deploys it with these parameter values (defaults otherwise)."""
    parameters = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
    parameters.update(values)
    parameters = {k: v for k, v in parameters.items() if v is not None}
    conditions = template.get("Conditions", {})
    truth = {name: bool(condition_value(e, conditions, parameters)) for name, e in conditions.items()}
    out = {k: v for k, v in template.items() if k != "Conditions"}
    for section in ("Resources", "Outputs"):
        kept = {}
        for name, item in template.get(section, {}).items():
            if "Condition" in item and not truth[item["Condition"]]:
                continue
            kept[name] = decided({k: v for k, v in item.items() if k != "Condition"}, truth)
        out[section] = kept
    return out


def mappings(template):
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::EventSourceMapping"
    }


def mapping_problems(template, mode):
    found = mappings(template)
    if len(found) != 1:
        yield f"{mode}: {len(found)} event source mappings, not one"
        return
    (name, mapping), = found.items()
    properties = mapping["Properties"]
    where = f"{mode}: {name}"
    if properties.get("MetricsConfig") != {"Metrics": ["EventCount"]}:
        yield f"{where}: MetricsConfig is {properties.get('MetricsConfig')}, not EventCount (the dashboard reads them)"
    if properties.get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
        yield f"{where}: FunctionResponseTypes is not [ReportBatchItemFailures]"
    scaling = properties.get("ScalingConfig")
    pollers = properties.get("ProvisionedPollerConfig")
    if mode == "provisioned":
        if scaling is not None:
            yield f"{where}: ScalingConfig {scaling} beside provisioned pollers (AWS refuses MaximumConcurrency in this mode)"
        wanted = {"MinimumPollers": {"Ref": "MinimumPollers"}, "MaximumPollers": {"Ref": "MaximumPollers"}}
        if pollers != wanted:
            yield f"{where}: ProvisionedPollerConfig is {pollers}, not {wanted}"
    else:
        if pollers is not None:
            yield f"{where}: ProvisionedPollerConfig {pollers} in the on-demand mode"
        wanted = {"MaximumConcurrency": {"Ref": "MaximumConcurrency"}}
        if scaling != wanted:
            yield f"{where}: ScalingConfig is {scaling}, not {wanted}"


def parameter_problems(template):
    parameters = template["Parameters"]
    mode = parameters.get("ScalingMode", {})
    if mode.get("AllowedValues") != list(MODES) or mode.get("Default") != DEFAULT_MODE:
        yield f"ScalingMode: allowed {mode.get('AllowedValues')}, default {mode.get('Default')}; wanted {list(MODES)}, {DEFAULT_MODE}"
    for name, (low, high) in AWS_RANGES.items():
        spec = parameters.get(name)
        if spec is None:
            yield f"no parameter {name}"
            continue
        if spec.get("Type") != "Number" or spec.get("MinValue") != low or spec.get("MaxValue") != high:
            yield (
                f"{name}: {spec.get('Type')} from {spec.get('MinValue')} to {spec.get('MaxValue')}; "
                f"AWS's range is {low} to {high} (AWS_RANGES names the page)"
            )
        elif not low <= spec.get("Default", low) <= high:
            yield f"{name}: the default {spec['Default']} is outside {low} to {high}"
    low, high = (parameters.get(n, {}).get("Default", 0) for n in ("MinimumPollers", "MaximumPollers"))
    if low > high:
        yield f"the default MinimumPollers ({low}) is above the default MaximumPollers ({high})"


def metric_rows(widget):
    """A metric widget's rows as (namespace, name, dimensions), its "." and "..." spelled out."""
    previous = []
    for row in widget["properties"].get("metrics", []):
        fields = [f for f in row if not isinstance(f, dict)]
        if fields[:1] == ["..."]:
            fields = previous + fields[1:]
        else:
            fields = [previous[i] if f == "." else f for i, f in enumerate(fields)]
        previous = fields
        yield fields[0], fields[1], dict(zip(fields[2::2], fields[3::2]))


def dashboard_problems(template):
    dashboards = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    if len(dashboards) != 1:
        yield f"{len(dashboards)} dashboards, not one"
        return
    body, variables = dashboards[0]["Properties"]["DashboardBody"]["Fn::Sub"]
    # Every ${...} is one that CloudFormation fills.
    known = set(variables) | set(template["Parameters"]) | {"AWS::Region", "AWS::AccountId", "AWS::Partition"}
    for name in sorted(set(re.findall(r"\$\{([^}]+)\}", body)) - known):
        yield f"dashboard: ${{{name}}} is neither a parameter nor a variable of its Fn::Sub"
    try:
        # Every ${...} is inside a JSON string, so the body parses as it is.
        widgets = json.loads(body)["widgets"]
    except json.JSONDecodeError as error:
        yield f"dashboard: not JSON once filled: {error}"
        return
    mapping = variables.get("Mapping")
    names = mappings(template)
    if not (isinstance(mapping, dict) and mapping.get("Ref") in names):
        yield f"dashboard: its Mapping is {mapping}, not the Ref of one of the event source mappings {sorted(names)}"
    rows = {(namespace, name): (dimensions, widget["properties"].get("title")) for widget in widgets
            for namespace, name, dimensions in metric_rows(widget)}
    for metric in MAPPING_METRICS:
        dimensions, _ = rows.get(("AWS/Lambda", metric), (None, None))
        if dimensions != {"EventSourceMappingUUID": "${Mapping}"}:
            yield f"dashboard: no AWS/Lambda {metric} by EventSourceMappingUUID ${{Mapping}} (found {dimensions})"
    # The mapping's counts sit beside the function's own (Stored, ...): in the same row.
    def row_of(namespace, metric):
        return next((w["y"] for w in widgets for n, m, _ in metric_rows(w) if (n, m) == (namespace, metric)), None)
    ours, theirs = row_of("${MetricsNamespace}", "Stored"), row_of("AWS/Lambda", "PolledEventCount")
    if ours is None or ours != theirs:
        yield f"dashboard: the mapping's counts (row {theirs}) are not beside the function's (row {ours})"
    print(f"dashboard: {len(widgets)} widgets, valid JSON, the mapping's metrics by its UUID beside the function's")


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    template = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    problems = list(parameter_problems(template)) + list(dashboard_problems(template))
    for mode in MODES:
        render = rendered(template, {"ScalingMode": mode})
        (out / f"{mode}.json").write_text(json.dumps(render, indent=2) + "\n")
        problems += mapping_problems(render, mode)
    for problem in problems:
        print(f"template.yaml: {problem}", file=sys.stderr)
    if not problems:
        print(
            f"template.yaml: both scaling modes rendered into {out} (on-demand: MaximumConcurrency; provisioned: "
            "pollers, no MaximumConcurrency; the mapping's metrics on in both); AWS's parameter ranges"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
