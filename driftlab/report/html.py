"""The self-contained HTML report: plots as inline SVG, no scripts, no network.

Every string that came from a user (experiment, campaign, profile names,
parameters) goes through ``html.escape``; a Content-Security-Policy that
forbids scripts is the second line of defence.
"""

from __future__ import annotations

from html import escape
from typing import Any

from driftlab.report import examples, fmt, svg
from driftlab.report.optimism import HEADERS as OPTIMISM_HEADERS, TITLE as OPTIMISM_TITLE, optimism_rows
from driftlab.report.tuning import tuning_view

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:24px auto;padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.5em;margin-bottom:4px} h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd}
.meta{color:#555} .badge{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:600}
.PASS{background:#2ca02c} .FAIL{background:#d62728} .NA{background:#888} .INCOMPLETE{background:#e08a00}
pre.error{background:#fff4f4;border-left:4px solid #d62728;padding:6px 10px;white-space:pre-wrap;font-size:.85em}
table{border-collapse:collapse;margin:8px 0;font-size:.9em} th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f6f6f6} td:first-child,th:first-child{text-align:left}
.summary{background:#f7f9fc;border-left:4px solid #1f77b4;padding:8px 16px}
.plot{max-width:100%;height:auto;display:block;margin:8px 0} .grid{display:flex;flex-wrap:wrap;gap:8px}
.grid .plot{width:310px} .note{color:#666;font-size:.9em} .notvaried{color:#888;font-style:italic}
"""


def _e(value: Any) -> str:
    return escape(str(value))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _sources(result: dict[str, Any]) -> str:
    metric, task = result["metric"]["name"], result["task"]
    floor = result["metric"].get("noise_floor")
    rows, plot_rows = [], []
    for name, s in result["sources"].items():
        if not s.get("varied"):
            rows.append([_e(name)] + [f'<span class="notvaried">{_e(s.get("note", "not varied"))}</span>'] + [""] * 9)
            plot_rows.append((name, None, None, "not varied"))
            continue
        rows.append([_e(name), fmt.num(s["metric_sd"]), fmt.ci(s.get("metric_sd_ci95")),
                     f'{_e(s.get("levels"))}, {fmt.num(s.get("metric_df_effective"), 1)}', fmt.num(s.get("noise_floor")),
                     fmt.dis(s.get("disagreement"), task), fmt.num(s.get("max_abs_diff")),
                     fmt.num(s.get("correlation")), fmt.pct(s.get("identical_share"), 0),
                     fmt.num(s.get("weight_distance")), fmt.num(s.get("first_parting_epoch"))])
        plot_rows.append((name, s["metric_sd"], s.get("metric_sd_ci95"), ""))
    lines = [(floor, "test-set noise floor")] if floor is not None else []
    plot = svg.hbars(plot_rows, title=f"SD of {metric} by source (bars: 95% CI respecting the number of levels)",
                     axis=f"SD of {metric}", lines=lines)
    headers = ["source", f"{metric} SD", "95% CI (L levels)", "levels, eff. df", "noise floor",
               "disagreement" if task == "classification" else "RMS prediction diff (target units)", "max abs diff",
               "pred. correlation", "identical weights", "weight distance (rel.)", "loss curves part at epoch"]
    return (f"<h2>Sources of variation</h2>{plot}{_table(headers, rows)}"
            f'<p class="note">{_e(metric)} on the fixed evaluation set (n={_e(result["metric"]["n_eval"])}). '
            "Each source is measured between runs that differ only in it. Noise floor: sqrt(p(1-p)/n), "
            "the binomial standard error of an accuracy; an SD below it is test-set sampling noise.</p>")


def _variance(result: dict[str, Any]) -> str:
    var = result.get("variance") or {}
    shares = var.get("shares") or {}
    if not shares:
        return "<h2>Share of variance by source</h2><p class='notvaried'>not estimable: nothing was varied</p>"
    cis, notes = var.get("shares_ci95") or {}, var.get("share_notes") or {}
    rows = [(k, v, cis.get(k), notes.get(k, "0 total variance"))
            for k, v in sorted(shares.items(), key=lambda kv: -(kv[1] or 0))]
    plot = svg.hbars(rows, title=f"Share of the variance in {var.get('metric')} (bars: 95% CI, bootstrap of the fit)",
                     axis="share of total variance", percent=True)
    terms = [[_e(t["name"]), fmt.num(t.get("variance_raw"), 6), fmt.num(t.get("variance"), 6),
              _e(t.get("df", "")), _e(t.get("what", ""))] for t in var.get("terms", [])]
    return (f"<h2>Share of variance by source</h2>{plot}<p class='note'>Method: {_e(var.get('method'))}.</p>"
            f"<details><summary>All variance terms</summary>"
            f"{_table(['term', 'variance (raw)', 'variance (used)', 'df', 'what'], terms)}</details>")


def _hardware(result: dict[str, Any]) -> str:
    task, ref = result["task"], result["reference"]
    hw = result["hardware"]
    if not hw:
        return f"<h2>Profiles vs the reference</h2><p class='notvaried'>Only {_e(ref)} ran: hardware not varied.</p>"
    budget = (result.get("budgets") or {}).get("max_drift_ratio")
    plot_rows = [(p, h.get("drift_to_seed_noise"), None, h.get("note") or "not comparable")
                 for p, h in hw.items()]
    lines = [(1.0, "1× seed noise")] + ([(budget, f"budget {budget}")] if budget is not None else [])
    plot = svg.hbars(plot_rows, title=f"Drift of each profile vs {ref}, in units of seed noise",
                     axis="drift SD ÷ seed-noise SD", lines=lines)
    rows = []
    for p, h in hw.items():
        if not h.get("compared"):
            rows.append([_e(p), "0", f'<span class="notvaried">{_e(h.get("note", ""))}</span>'] + [""] * 7)
            continue
        rows.append([_e(p), _e(h["compared"]), fmt.num(h.get("metric_delta_mean")),
                     fmt.num(h.get("metric_delta_max_abs")), fmt.dis(h.get("disagreement"), task),
                     fmt.num(h.get("max_abs_diff")), fmt.pct(h.get("identical_share"), 0),
                     fmt.num(h.get("weight_distance")), fmt.ratio(h.get("drift_to_seed_noise")),
                     fmt.ratio(h.get("drift_to_noise_floor"))])
    headers = ["profile", "runs compared", "Δ metric (mean)", "max |Δ|",
               "disagreement" if task == "classification" else "RMS prediction diff (target units)", "max abs diff",
               "identical weights", "weight distance", "drift ÷ seed noise", "drift ÷ noise floor"]
    mat = result.get("disagreement_matrix") or {}
    heat = ""
    if mat.get("profiles") and len(mat["profiles"]) > 1:
        heat = svg.heatmap(mat["profiles"], mat["values"], percent=task == "classification",
                           title="Prediction disagreement between profiles (diagonal: repeats)"
                           if task == "classification" else "RMS prediction difference between profiles")
    return (f"<h2>Profiles vs the reference ({_e(ref)})</h2>{plot}{_table(headers, rows)}"
            "<p class='note'>Drift SD = sqrt(mean Δ²/2) over runs with the same seeds; seed noise = pooled SD "
            f"across init, shuffle and split seeds on {_e(ref)}.</p>{heat}")


def _curves(result: dict[str, Any]) -> str:
    plots = [svg.curves([(c["label"], c["loss"]) for c in series], title=f"training loss · {source}")
             for source, series in (result.get("curves") or {}).items()]
    if not plots:
        return ""
    return ("<h2>Loss curves, one panel per source</h2><div class='grid'>" + "".join(plots) + "</div>"
            "<p class='note'>Runs of one group (differing only in that source); identical runs draw one line.</p>")


def _determinism(result: dict[str, Any]) -> str:
    det, task = result["determinism"], result["task"]
    items = []
    for mode in ("on", "off"):
        rep = det.get(f"repeats_{mode}") or {}
        if rep.get("varied"):
            items.append(f"Repeats with determinism {mode}: {fmt.pct(rep['identical_share'], 0)} bitwise identical, "
                         f"{fmt.dis(rep.get('disagreement'), task)} disagreement, metric SD {fmt.num(rep.get('metric_sd'))}.")
        else:
            items.append(f"Repeats with determinism {mode}: {rep.get('note', 'none')}.")
    items.append(f"Mean fit time on ÷ off: {fmt.ratio(det.get('fit_time_ratio_on_off'))} "
                 f"({fmt.num(det.get('fit_s_on_mean'), 2)} s vs {fmt.num(det.get('fit_s_off_mean'), 2)} s, "
                 f"{det.get('fit_time_pairs', 0)} matched runs).")
    for prof, r in (det.get("repeats_on_by_profile") or {}).items():
        items.append(f"{prof}: {fmt.pct(r['identical_share'], 0)} of deterministic repeats bitwise identical.")
    return "<h2>Determinism on vs off</h2><ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _gate(result: dict[str, Any]) -> str:
    gate = result["gate"]
    if not gate.get("checks"):
        return "<h2>Tolerance gate</h2><p>No budgets configured in <code>tolerances</code>.</p>"
    rows = [[_e(c["check"]), _e(c["where"]), fmt.num(c["value"]), f"{_e(c['op'])} {_e(c['budget'])}",
             _e(c.get("budget_from", "")), f'<span class="badge {c["status"].replace("/", "")}">{_e(c["status"])}</span>']
            for c in gate["checks"]]
    return "<h2>Tolerance gate</h2>" + _table(["check", "where", "value", "budget", "from", "status"], rows)


def _failures(result: dict[str, Any]) -> str:
    groups = result.get("failures") or []
    if not groups:
        return ""
    items = "".join(f"<li>{g['count']} run(s) on {_e(', '.join(g.get('profiles') or []))}:"
                    f'<pre class="error">{_e(g.get("detail") or g["error"])}</pre></li>' for g in groups)
    return ("<h2>Failed runs</h2><p>Each distinct error once, with the last frames of your own code. "
            "Failed runs are left out of every statistic.</p><ul>" + items + "</ul>")


def _versions(result: dict[str, Any]) -> str:
    vers = result.get("versions") or {}
    if not vers:
        return ""
    keys = ["tensorflow", "keras", "numpy", "cuda", "cudnn", "driver", "gpu", "cpu_model"]
    rows = [[_e(p)] + [_e(v.get(k) if v.get(k) is not None else fmt.DASH) for k in keys]
            + [_e(", ".join(f"{a}={b}" for a, b in (v.get("env") or {}).items()))] for p, v in vers.items()]
    return "<h2>Software and hardware per profile</h2>" + _table(["profile"] + keys + ["env knobs"], rows)


def _tuning(result: dict[str, Any]) -> str:
    """The Tuning section: what was tuned, where the parameters came from, how to open the study."""
    view = tuning_view(result.get("tuning"))
    if view is None:
        return ""
    parts = [f"<h2>Tuning</h2><p>{_e(view.sentence)}</p>"]
    if not view.tuned:
        return parts[0]
    if view.source:
        parts.append(f"<p>{_e(view.source)}</p>")
    if view.params:
        parts.append(_table(["parameter", "best value"], [[_e(k), _e(v)] for k, v in view.params]))
    if view.top:
        parts.append(f"<p>{_e(view.top_title)}:</p>")
        parts.append(_table(["rank", "trial", "value", "parameters"], [[_e(c) for c in row] for row in view.top]))
    if view.commands:
        note = f" ({_e(view.commands_note)})" if view.commands_note else ""
        parts.append(f"<p>Open the study in Optuna's own tools{note}:</p>"
                     f"<pre><code>{_e(chr(10).join(view.commands))}</code></pre>")
    return "".join(parts)


def _top_k(result: dict[str, Any]) -> str:
    from driftlab.report.topk import CONFIG_HEADERS, PAIR_HEADERS, TITLE, top_k_rows

    view = top_k_rows(result)
    if view is None:
        return ""
    sentence, configs, pairs = view
    return (f"<h2>{_e(TITLE)}</h2><p>{_e(sentence)}</p>"
            + _table(CONFIG_HEADERS, [[_e(v) for v in row] for row in configs])
            + _table(PAIR_HEADERS, [[_e(v) for v in row] for row in pairs]))


def _optimism(result: dict[str, Any]) -> str:
    """The tuned value against retraining the same configuration (``optimism``)."""
    view = optimism_rows(result)
    if view is None:
        return ""
    sentences, rows = view
    return (f"<h2>{_e(OPTIMISM_TITLE)}</h2>" + "".join(f"<p>{_e(s)}</p>" for s in sentences)
            + _optimism_plot(result) + _table(OPTIMISM_HEADERS, [[_e(a), _e(b)] for a, b in rows]))


def _optimism_plot(result: dict[str, Any]) -> str:
    """The tuned value beside what retraining gives (mean ± SD), and the top-k configurations' means."""
    o = result.get("optimism") or {}
    retrained = o.get("retrained") or {}
    if o.get("tuned_value") is None or retrained.get("mean") is None:
        return ""
    mean, spread = retrained["mean"], retrained.get("sd") or 0.0
    bars = [(f"tuned (trial {o.get('best_trial')})", o["tuned_value"], None, ""),
            ("retrained, mean ± SD", mean, [mean - spread, mean + spread], "")]
    for c in ((result.get("top_k") or {}).get("configs") or [])[1:]:
        sd = c.get("sd") or 0.0
        bars.append((f"runner-up #{c['rank_tuned']} (eval)", c.get("mean"),
                     None if c.get("mean") is None else [c["mean"] - sd, c["mean"] + sd], "no finished run"))
    return svg.hbars(bars, title=f"Tuned value vs retraining ({o.get('metric')})", axis=str(o.get("metric")))


def to_html(result: dict[str, Any]) -> str:
    """The whole report as one HTML document (UTF-8, no external resources, no scripts)."""
    exp = result.get("experiment") or {}
    title = f"driftlab report: {exp.get('name', '')} ({exp.get('campaign', '')})"
    status = result["gate"]["status"]
    counts = result["counts"]
    head = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>")
    meta = (f'<p class="meta"><span class="badge {_e(status)}">gate {_e(status)}</span> · {_e(result["task"])} · '
            f'metric {_e(result["metric"]["name"])} (mean {_e(fmt.num(result["metric"].get("mean")))}, '
            f'n={_e(result["metric"]["n_eval"])}) · reference {_e(result["reference"])} · '
            f'{counts["ok"]} runs ok, {counts["failed"]} failed, {counts["diverged"]} diverged</p>')
    summary = '<div class="summary"><ul>' + "".join(f"<li>{_e(s)}</li>" for s in result["summary"]) + "</ul></div>"
    skipped = "".join(f"<li>Skipped profile {_e(s['name'])}: {_e(s['reason'])}</li>"
                      for s in exp.get("skipped_profiles", []))
    body = [f"<h1>{_e(title)}</h1>", meta, summary, f"<ul>{skipped}</ul>" if skipped else "", _failures(result),
            _sources(result), _variance(result), _hardware(result), _curves(result), _determinism(result), examples.switch_html(result), examples.html(result),
            _gate(result), _versions(result), _tuning(result), _optimism(result), _top_k(result),
            f'<p class="note">Schema {_e(result.get("schema"))}; the JSON report has every number shown here.</p>']
    return head + "".join(body) + "</body></html>"
