"""The numbers printed in report.md and report.html are the ones in report.json (after the report's rounding).

The tables of both reports are parsed back into {header: cell} rows and each figure is compared with
the JSON value within half a unit of its last printed digit.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from driftlab.report import write_all
from support.synthetic import SyntheticPlan, generate


def parse_number(cell: str) -> tuple[float | None, float]:
    """(value, half a unit of the last printed digit); (None, 0) for a dash."""
    cell = cell.strip()
    if cell in ("—", ""):
        return None, 0.0
    m = re.fullmatch(r"([-+]?\d+(?:\.(\d+))?)(e[-+]\d+)?\s*(%|×)?", cell)
    assert m, f"not a number: {cell!r}"
    digits = len(m.group(2) or "")
    exp = int(m.group(3)[1:]) if m.group(3) else 0
    value = float(m.group(1)) * 10.0 ** exp
    half = 0.5 * 10.0 ** (-digits + exp)
    if m.group(4) == "%":
        value, half = value / 100, half / 100
    return value, half


def close(cell: str, expected: float | None) -> bool:
    value, half = parse_number(cell)
    if expected is None:
        return value is None
    return value is not None and abs(value - expected) <= half * (1 + 1e-9) + 1e-15


def md_tables(text: str) -> list[list[dict[str, str]]]:
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and line.startswith("| ") and lines[i + 1].startswith("|---"):
            headers = [h.strip() for h in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
                rows.append(dict(zip(headers, cells)))
            tables.append(rows)
    return tables


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self._row, self._cell, self._in_svg = [], None, None, 0

    def handle_starttag(self, tag, attrs):
        if tag == "svg":
            self._in_svg += 1
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "svg":
            self._in_svg -= 1
        elif tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None and not self._in_svg:
            self._cell += data


def html_tables(text: str) -> list[list[dict[str, str]]]:
    p = _Tables()
    p.feed(text)
    return [[dict(zip(t[0], r)) for r in t[1:]] for t in p.tables if t]


def table_with(tables, *headers) -> dict[str, dict[str, str]]:
    for t in tables:
        if t and all(h in t[0] for h in headers):
            first = next(iter(t[0]))
            return {r[first]: r for r in t}
    raise AssertionError(f"no table with {headers}")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    plan = SyntheticPlan(profiles=("ref", "b"), n_eval=300, flip_rate=0.1, repeats=2,
                         sigmas={"init": 0.02, "shuffle": 0.01, "split": 0.015, "hardware": 0.01,
                                 "nondeterminism": 0.004})
    cfg = ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "digits"}, "profiles": {"auto": True},
                                           "tolerances": {"max_metric_sd": 0.5}})
    out = tmp_path_factory.mktemp("report")
    paths = write_all(analyze(generate(plan), cfg, reference="ref"), out)
    return (json.loads(open(paths["json"]).read()), open(paths["markdown"]).read(), open(paths["html"]).read())


@pytest.mark.parametrize("kind", ["markdown", "html"])
def test_report_numbers_match_the_json(reports, kind):
    res, md, html = reports
    tables = md_tables(md) if kind == "markdown" else html_tables(html)
    sd_header = "metric SD" if kind == "markdown" else "accuracy SD"
    src = table_with(tables, "source", sd_header, "noise floor")
    checked = 0
    for name, s in res["sources"].items():
        assert s["varied"], name
        row = src[name]
        assert close(row[sd_header], s["metric_sd"]), (name, row[sd_header], s["metric_sd"])
        assert close(row["noise floor"], s["noise_floor"]) and close(row["disagreement"], s["disagreement"])
        checked += 3
    # the source noise floor is the binomial floor at the source's mean accuracy
    assert res["metric"]["noise_floor"] == pytest.approx((res["metric"]["mean"] * (1 - res["metric"]["mean"])
                                                          / res["metric"]["n_eval"]) ** 0.5)
    hw = table_with(tables, "profile", "Δ metric (mean)")
    max_key = "max abs Δ" if kind == "markdown" else "max |Δ|"
    for prof, h in res["hardware"].items():
        row = hw[prof]
        assert close(row["Δ metric (mean)"], h["metric_delta_mean"]) and close(row[max_key], h["metric_delta_max_abs"])
        assert close(row["disagreement"], h["disagreement"])
        assert close(row["drift ÷ seed noise"], h["drift_to_seed_noise"])
        checked += 4
    churn = table_with(tables, "source", "rows that flip")
    for name, c in res["churn"].items():
        assert close(churn[name]["rows that flip"], c["flip_share"])
        assert close(churn[name]["mean flip rate"], c["flip_rate_mean"])
        assert churn[name]["most unstable rows"].startswith(", ".join(str(i) for i in c["unstable_rows"][:3]))
        checked += 2
    jordan = table_with(tables, "source", "ratio", "verdict")
    for name, j in res["jordan"].items():
        row = jordan["seed (pooled)" if name == "seed" else name]
        assert close(row["ratio"], j["ratio"]) and close(row["observed var(accuracy)"], j["observed_var"])
        lo, hi = row["95% CI"].split("–")
        assert close(lo, j["ci95"][0]) and close(hi, j["ci95"][1]) and row["df"] == str(j["df"])
        checked += 4
    sw = res["determinism"]["switch"]
    row = table_with(tables, "comparison", "identical weights")["determinism on vs off (same seeds)"]
    assert row["runs compared"] == str(sw["compared"]) and row["identical weights"].startswith(f"{sw['identical']} of")
    assert close(row["Δ metric (mean, off − on)"], sw["metric_delta_mean"])
    assert close(row["max abs Δ"], sw["metric_delta_max_abs"]) and close(row["disagreement"], sw["disagreement"])
    assert close(row["fit time on ÷ off"], sw["fit_time_ratio_on_off"])
    # several gate rows share the check name: compared in order
    metric_sd_rows = [r for t in tables for r in t if r.get("check") == "metric_sd"]
    expected = [c for c in res["gate"]["checks"] if c["check"] == "metric_sd"]
    assert [r["where"] for r in metric_sd_rows] == [c["where"] for c in expected]
    assert all(close(r["value"], c["value"]) for r, c in zip(metric_sd_rows, expected))
    assert checked >= 30


def test_number_parser_rounding():
    assert parse_number("7.8%") == pytest.approx((0.078, 0.0005))
    assert parse_number("0.0200")[0] == 0.02 and parse_number("1.25e-05")[0] == pytest.approx(1.25e-5)
    assert parse_number("0.50×") == pytest.approx((0.5, 0.005)) and parse_number("—") == (None, 0.0)
    assert close("0.0200", 0.02004) and not close("0.0200", 0.0201)
