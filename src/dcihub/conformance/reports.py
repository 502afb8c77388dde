"""A conformance report in the four forms the kit writes: the terminal summary (rich), a
self-contained HTML page, JUnit XML for CI systems, and JSON."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jinja2
from rich.console import Console
from rich.table import Table

from .runner import Report

__all__ = ["print_summary", "to_html", "to_json", "to_junit", "write_reports"]

_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}


def print_summary(report: Report, console: Console, verbose: bool = False) -> None:
    """The per-requirement table (failures first, with their reasons) and the totals."""
    table = Table(title=f"DCI conformance — {report.actor} {report.registry} at {report.target}")
    table.add_column("requirement", no_wrap=True)
    table.add_column("tier")
    table.add_column("result", no_wrap=True)
    table.add_column("why / statement")
    order = {"fail": 0, "skip": 1, "pass": 2}
    for outcome in sorted(report.requirements, key=lambda o: order[o.status]):
        if outcome.status == "pass" and not verbose:
            continue
        why = outcome.reasons[0] if outcome.reasons else outcome.requirement.statement
        if len(outcome.reasons) > 1:
            why += f" (+{len(outcome.reasons) - 1} more)"
        style = _STYLE[outcome.status]
        table.add_row(
            outcome.requirement.id,
            outcome.requirement.tier,
            f"[{style}]{outcome.status.upper()}[/]",
            why,
        )
    if table.row_count:
        console.print(table)
    counts = report.counts()
    verdict = (
        "[bold red]NOT CONFORMANT[/] (a core requirement failed)"
        if report.core_failed
        else "[bold red]NOT CONFORMANT[/] (no core requirement could be judged)"
        if report.core_unjudged
        else "[bold green]CONFORMANT[/] on the core tier"
        if "core" in report.tiers
        else "[bold]no core requirement judged[/]"
    )
    console.print(
        f"{verdict}: [green]{counts['pass']} passed[/], [red]{counts['fail']} failed[/], "
        f"[yellow]{counts['skip']} skipped[/] of {len(report.requirements)} requirements "
        f"({', '.join(report.tiers)}) in {report.seconds:.1f} s"
    )


def to_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n"


def to_junit(report: Report) -> str:
    """One testsuite per tier, one testcase per requirement (failure / skipped)."""
    suites = ET.Element(
        "testsuites",
        name=f"dcihub conform {report.actor} {report.registry}",
        tests=str(len(report.requirements)),
        failures=str(len(report.failed)),
        time=f"{report.seconds:.3f}",
    )
    for tier in report.tiers:
        mine = [o for o in report.requirements if o.requirement.tier == tier]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=f"{report.registry}.{tier}",
            tests=str(len(mine)),
            failures=str(sum(o.status == "fail" for o in mine)),
            skipped=str(sum(o.status == "skip" for o in mine)),
            timestamp=report.started,
        )
        for outcome in mine:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"{report.actor}.{report.registry}.{tier}",
                name=f"{outcome.requirement.id}: {outcome.requirement.statement}",
            )
            if outcome.status == "fail":
                failure = ET.SubElement(
                    case, "failure", message=outcome.reasons[0][:500], type="nonconformance"
                )
                failure.text = "\n".join(outcome.reasons)
            elif outcome.status == "skip":
                ET.SubElement(case, "skipped", message="; ".join(outcome.reasons)[:500])
            props = ET.SubElement(case, "properties")
            ET.SubElement(props, "property", name="spec", value=outcome.requirement.spec)
            ET.SubElement(props, "property", name="checks", value=" ".join(outcome.checks))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


_HTML = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>DCI conformance: {{ r.actor }} {{ r.registry }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:80rem}
h1{font-size:1.4rem} table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
.pass{color:#137333;font-weight:600}.fail{color:#b3261e;font-weight:700}
.skip{color:#8a6d00;font-weight:600}
details{margin:.3rem 0} pre{background:#f6f6f6;padding:.5rem;overflow:auto;max-height:24rem;
font-size:.8rem;white-space:pre-wrap} .muted{color:#666;font-size:.85rem}
.verdict{font-size:1.1rem;padding:.5rem 0}
</style></head><body>
<h1>DCI conformance report — {{ r.actor }} {{ r.registry }}</h1>
<p class="muted">target {{ r.target }} · tiers {{ r.tiers|join(", ") }} · started {{ r.started }}
 · {{ "%.1f"|format(r.seconds) }} s{% if r.spec %} · official contract from {{ r.spec }}{% endif %}
 · dcihub {{ version }}</p>
<p class="verdict">{% if r.core_failed %}<span class="fail">NOT CONFORMANT</span>: a core
requirement failed{% elif r.core_unjudged %}<span class="fail">NOT CONFORMANT</span>: no core
requirement could be judged{% else %}<span class="pass">No core requirement failed</span>{% endif %} —
{{ counts.pass }} passed, {{ counts.fail }} failed, {{ counts.skip }} skipped.</p>
<table><thead><tr><th>requirement</th><th>tier</th><th>result</th><th>rule and evidence</th></tr>
</thead><tbody>
{% for o in outcomes %}<tr id="{{ o.requirement.id }}">
<td><b>{{ o.requirement.id }}</b></td><td>{{ o.requirement.tier }}</td>
<td class="{{ o.status }}">{{ o.status|upper }}</td>
<td>{{ o.requirement.statement }}<div class="muted">{{ o.requirement.spec }}
{% if o.checks %} · checked by {{ o.checks|join(", ") }}{% endif %}</div>
{% if o.reasons %}<ul>{% for why in o.reasons[:10] %}<li>{{ why }}</li>{% endfor %}
{% if o.reasons|length > 10 %}<li>… {{ o.reasons|length - 10 }} more</li>{% endif %}</ul>{% endif %}
{% for check, index in o.evidence[:3] %}{% set e = exchanges[check][index] %}
<details><summary>{{ check }} — {{ e.label }}: {{ e.method }} {{ e.url }} →
{% if e.error %}{{ e.error }}{% else %}HTTP {{ e.status }}{% endif %}</summary>
<div class="muted">request</div><pre>{{ e.request_headers|tojson(indent=2) }}
{{ e.request_body }}</pre>
<div class="muted">answer</div><pre>{{ e.response_body }}</pre></details>{% endfor %}
</td></tr>{% endfor %}
</tbody></table>
<h2>Checks</h2><table><thead><tr><th>check</th><th>tier</th><th>status</th><th>verifies</th>
<th>s</th></tr></thead><tbody>
{% for c in r.checks %}<tr><td>{{ c.name }}<div class="muted">{{ c.title }}</div></td>
<td>{{ c.tier }}</td><td>{{ c.status }}{% if c.reason %}<div class="muted">{{ c.reason }}
</div>{% endif %}</td><td>{{ c.verifies|join(", ") }}</td>
<td>{{ "%.2f"|format(c.seconds) }}</td></tr>{% endfor %}
</tbody></table></body></html>
"""
)


def to_html(report: Report) -> str:
    """A self-contained page (no external assets): per requirement its verdict, why, and up
    to three exchanges (request and answer) that show it."""
    from dcihub import __version__

    order = {"fail": 0, "skip": 1, "pass": 2}
    return _HTML.render(
        r=report,
        counts=report.counts(),
        outcomes=sorted(report.requirements, key=lambda o: (order[o.status], o.requirement.id)),
        exchanges={c.name: [e.as_dict() for e in c.exchanges] for c in report.checks},
        version=__version__,
    )


def write_reports(
    report: Report,
    html: Path | None = None,
    junit: Path | None = None,
    json_path: Path | None = None,
) -> list[Path]:
    written = []
    for path, render in ((html, to_html), (junit, to_junit), (json_path, to_json)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(report), encoding="utf-8")
            written.append(path)
    return written
