"""The top-K table (``top_k`` in report.json) as rows both report formats render."""

from __future__ import annotations

import json
from typing import Any

from driftlab.report import fmt

TITLE = "Top configurations retrained over seeds"
CONFIG_HEADERS = ["tuned rank", "trial", "parameters", "runs", "mean", "SD", "noise-aware tier"]
PAIR_HEADERS = ["A", "B", "seed points", "P(A beats B)", "95% CI", "verdict"]


def top_k_rows(result: dict[str, Any]) -> tuple[str, list[list[str]], list[list[str]]] | None:
    block = result.get("top_k")
    if not block:
        return None
    configs = [[str(c["rank_tuned"]), "—" if c.get("trial") is None else str(int(c["trial"])),
                json.dumps(c["params"], sort_keys=True), f"{c['runs']}/{c['planned']}", fmt.num(c.get("mean")),
                fmt.num(c.get("sd")), str(c["tier"])] for c in block["configs"]]
    pairs = []
    for p in block["pairs"]:
        if p["p_a_beats_b"] is None:
            pairs.append([f"#{p['a']}", f"#{p['b']}", "0", "—", "—", "no shared seed point"])
            continue
        lo, hi = p["ci95"]
        verdict = "distinguishable" if p["distinguishable"] else "indistinguishable given seed noise"
        pairs.append([f"#{p['a']}", f"#{p['b']}", str(p["n"]), fmt.pct(p["p_a_beats_b"], 0),
                      f"{fmt.pct(lo, 0)}–{fmt.pct(hi, 0)}", verdict])
    return block["sentence"], configs, pairs
