"""Drift statistics: how much each source of variation moves the result.

Public surface: :func:`analyze` (records → report body) and
:func:`headline_metrics` (report body → KFP Metrics). Every comparison is
made between runs that differ in exactly one source, so an effect is never
attributed to the wrong source. Definitions: docs/report-schema.md.
"""

from __future__ import annotations

from driftlab.drift.analysis import SCHEMA, analyze
from driftlab.drift.gate import evaluate as evaluate_gate
from driftlab.drift.runs import RecordError
from driftlab.drift.sources import SOURCES
from driftlab.drift.stats import bootstrap_ci, chi2_ci, noise_floor, pooled_sd, sd
from driftlab.drift.summary import headline_metrics, summarize

__all__ = ["SCHEMA", "SOURCES", "RecordError", "analyze", "bootstrap_ci", "chi2_ci", "evaluate_gate",
           "headline_metrics", "noise_floor", "pooled_sd", "sd", "summarize"]
