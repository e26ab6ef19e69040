"""The churn histogram: valid SVG, one bar per bin, labels escaped, drawn in the HTML report."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from driftlab.report import to_html
from driftlab.report.svg_hist import histogram
from support.synthetic import SyntheticPlan, generate

NS = "{http://www.w3.org/2000/svg}"


def test_histogram_is_valid_svg_with_a_bar_per_bin():
    svg = histogram([0.0, 0.25, 0.5, 0.75, 1.0], [5, 0, 2, 1], title="rate <script>", axis="a & b", percent=True)
    root = ET.fromstring(svg)
    bars = [r for r in root.iter(f"{NS}rect") if r.find(f"{NS}title") is not None]
    assert len(bars) == 4 and "<script>" not in svg
    heights = [float(b.get("height")) for b in bars]
    assert heights[1] == 0 and heights[0] > heights[2] > heights[3] > 0
    assert ET.fromstring(histogram([], [], title="t", axis="a")) is not None


def test_html_report_draws_one_churn_histogram_per_source():
    cfg = ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "digits"}, "profiles": {"auto": True}})
    res = analyze(generate(SyntheticPlan(profiles=("ref", "b"), sigmas={"hardware": 0.01})), cfg, reference="ref")
    html = to_html(res)
    hists = [s for s in re.findall(r"<svg.*?</svg>", html, re.S) if "per-row flip rate" in s]
    assert len(hists) == len(res["churn"]) == 5
    for s in hists:
        ET.fromstring(s)
