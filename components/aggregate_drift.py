from kfp import dsl
from kfp.dsl import HTML, Artifact, Markdown, Metrics, Output

from driftlab.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def aggregate_drift(config_yaml: str, campaign: str, tuning: str, seeds_summary: list,
                    nodes_summary: list, report_json: Output[Artifact], report_md: Output[Markdown],
                    report_html: Output[HTML], metrics: Output[Metrics]) -> str:
    """Compute drift by source and profile, write the reports, evaluate the tolerance gate.

    Args:
        config_yaml: The experiment file's text.
        campaign: Campaign name (selects the runs).
        tuning: Study summary from select_best (JSON text).
        seeds_summary: Collected counts from retrain_across_seeds (one per shard).
        nodes_summary: Collected counts from retrain_across_nodes.
        report_json: The JSON report (schema driftlab.report/2, docs/report-schema.md).
        report_md: The Markdown report, shown in the KFP UI.
        report_html: The self-contained HTML report with plots (no network needed to view it).
        metrics: Headline figures for the KFP run comparison view.

    Returns:
        The gate status: PASS, FAIL or INCOMPLETE.
    """
    import shutil
    import tempfile

    from driftlab import settings, stages

    out_dir = settings.REPORT_DIR.raw() or tempfile.mkdtemp(prefix="driftlab-report-")
    result = stages.aggregate(config_yaml, campaign, out_dir, tuning_summary=tuning)
    shutil.copyfile(result["paths"]["json"], report_json.path)
    shutil.copyfile(result["paths"]["markdown"], report_md.path)
    shutil.copyfile(result["paths"]["html"], report_html.path)
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
    for line in result["summary"]:
        print(line, flush=True)
    print(f"[driftlab] report: {result['paths']['markdown']}", flush=True)
    return result["gate"]
