"""What one pipeline task receives as its argument, bounded from the experiment before the pipeline starts.

kfp.local starts each task with its whole executor input (every parameter JSON-encoded, and
the paths of its outputs under ``<home>/kfp``) as ONE command-line argument, and Linux refuses
one longer than ``contracts.MAX_TASK_ARGUMENT`` bytes: "Argument list too long". Measured with
kfp.local: a task whose only parameter is a 130,811-character string starts, one character
more does not (the remaining 258 bytes are keys and paths). Every task but check-gate gets the
experiment file's text, JSON-escaped (a newline takes 2 bytes, a non-ASCII character 6 or 12),
so the bound is: that text + the largest share of other parameters one task gets + keys and
output paths (``EXECUTOR_OVERHEAD`` + ``OUTPUT_PATHS`` × the home folder's length; a test
checks these against kfp's own executor input for every task of the compiled pipeline).

The shares that grow with the experiment: aggregate-drift's tuning summary (cut to
``contracts.MAX_TUNING_TEXT`` by select-best) and one summary per retrain task (seed shards,
node tasks); retrain-across-
nodes' loop item (the profile's placement and the tuned parameters); plan-nodes' tuned
parameters (at most ``contracts.MAX_PARAMS_TEXT``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftlab.config import CategoricalParam, ExperimentConfig, FloatParam, IntParam
from driftlab.contracts import (MAX_PARAMS_TEXT, MAX_TASK_ARGUMENT, MAX_TUNING_TEXT, MIN_TOP_K_ROWS,
                                TooLargeForTask, escaped_size)

EXECUTOR_OVERHEAD = 1536  # keys, output names, run and task names: at most 1,233 bytes measured (aggregate-drift)
OUTPUT_PATHS = 8  # paths under <home>/kfp in one task's executor input (pool-placement has 8)
CAMPAIGN_BYTES = 130  # the longest campaign name (128 characters), quoted
STAGE_SUMMARY_BYTES = 384  # one retrain stage's counts as the next task receives them, besides the profile name
SUMMARY_FIXED_BYTES = 1024  # a tuning summary's keys, counts and stability figures
ROW_FIXED_BYTES = 40  # a top-k row's value and trial number, with separators
WORST_FLOAT = -2.2250738585072014e-308  # the longest repr a double has (24 characters)


@dataclass(frozen=True)
class Share:
    """What one task receives besides the experiment file's text."""

    task: str
    what: str
    size: int
    field: str  # the experiment's field that makes it grow


def worst_params(config: ExperimentConfig) -> dict[str, Any]:
    """Tuned values taking the most room as text: the longer end of ints, the longest float, the longest choice."""
    out: dict[str, Any] = {}
    for name, p in config.search_space.items():
        if isinstance(p, IntParam):
            out[name] = max((p.low, p.high), key=lambda v: len(str(v)))
        elif isinstance(p, FloatParam):
            out[name] = WORST_FLOAT
        elif isinstance(p, CategoricalParam):
            out[name] = max(p.choices, key=lambda c: escaped_size(json.dumps(c)))
    return out


def params_share(config: ExperimentConfig) -> tuple[int, str]:
    """The most ``best_params`` (typed JSON text) takes in an argument, and the field that makes it largest."""
    if config.tuning.study:
        return MAX_PARAMS_TEXT, "tuning.study"
    from driftlab.config import params

    worst = worst_params(config)
    size = escaped_size(params.encode_typed(config, worst))
    longest = max(worst, key=lambda n: escaped_size(json.dumps(worst[n])), default="")
    return size, f"search_space.{longest}" if longest else "search_space"


def _storage_text(config: ExperimentConfig, home: Path) -> str:
    env = config.tuning.storage_env or config.storage.url_env
    return os.environ.get(env, "").strip() or str(home / "optuna-journal.log")


def tuning_share(config: ExperimentConfig, home: Path, campaign: str | None) -> tuple[int, int]:
    """(the most the tuning summary takes, the least it must take): rows past ``MIN_TOP_K_ROWS`` and
    ``tuning.retrain_top_k`` are cut at run time to fit ``MAX_TUNING_TEXT``; the rest must fit it."""
    if not config.search_space and not config.tuning.study:
        return 256, 256  # {"best_params": {}, "source": {"kind": "none"}, ...}
    worst = worst_params(config)
    row = (escaped_size(json.dumps(worst)) if not config.tuning.study else MAX_PARAMS_TEXT) + ROW_FIXED_BYTES
    study = config.tuning.study or f"driftlab.{config.name}.{campaign or 'x' * (CAMPAIGN_BYTES - 2)}"
    fixed = (SUMMARY_FIXED_BYTES + 3 * escaped_size(study) + 4 * escaped_size(_storage_text(config, home))
             + 8 * config.tuning.workers)
    keep = min(config.tuning.top_k, max(config.tuning.retrain_top_k, MIN_TOP_K_ROWS))
    return MAX_TUNING_TEXT, fixed + row * (keep + 1)  # best_params, and the rows kept


def shares(config: ExperimentConfig, config_text: str, *, home: Path, campaign: str | None) -> list[Share]:
    """What each task that grows with the experiment receives besides the experiment file's text."""
    from driftlab import stages

    params, params_field = params_share(config)
    tuning, _ = tuning_share(config, home, campaign)
    worst: dict[str, Any] | str = {} if config.tuning.study else worst_params(config)
    items = stages.node_tasks(config_text, worst)
    shards = len(stages.seed_tasks(config_text))
    extra = MAX_PARAMS_TEXT if config.tuning.study else 0
    largest_item = max(items, key=escaped_size)
    reference = escaped_size(config.profiles.reference or "") + escaped_size("cpu-default")
    summaries = (sum(STAGE_SUMMARY_BYTES + escaped_size(i.get("profile", "")) for i in items)
                 + shards * (STAGE_SUMMARY_BYTES + reference))
    campaign_size = escaped_size(campaign) if campaign else CAMPAIGN_BYTES
    many = "profiles.pools" if len(items) >= shards else "seeds.shards"
    return [
        Share("aggregate-drift", f"the tuning summary (at most {tuning:,} bytes) and {len(items) + shards} "
              "retrain task summaries", campaign_size + tuning + summaries, many),
        Share("retrain-across-nodes", f"its loop item (profile '{largest_item.get('profile', '')}' and the tuned "
              "parameters)", campaign_size + escaped_size(largest_item) + extra, params_field),
        Share("plan-nodes", "the tuned parameters", params, params_field),
    ]


def check(config: ExperimentConfig, config_text: str, *, home: Path, campaign: str | None, source: str,
          home_field: str) -> int:
    """Refuse an experiment whose largest task argument could pass ``MAX_TASK_ARGUMENT``; return that bound."""
    params, params_field = params_share(config)
    if params > MAX_PARAMS_TEXT:
        raise TooLargeForTask(f"{params_field}: the tuned parameters can take {params:,} bytes as a pipeline-task "
                              f"parameter, more than the {MAX_PARAMS_TEXT:,} allowed; shorten the longest "
                              "categorical choices (each choice travels whole), or tune fewer parameters")
    _, least = tuning_share(config, home, campaign)
    if least > MAX_TUNING_TEXT:
        raise TooLargeForTask(f"tuning.retrain_top_k: the tuning summary needs {least:,} bytes for its top-k rows "
                              f"({params_field} and the other tuned values in each), more than its "
                              f"{MAX_TUNING_TEXT:,}-byte share of a pipeline-task argument; lower "
                              "tuning.retrain_top_k, or tune fewer or shorter parameters")
    text = escaped_size(config_text)
    paths = EXECUTOR_OVERHEAD + OUTPUT_PATHS * (escaped_size(str(home)) + 4)
    largest = max(shares(config, config_text, home=home, campaign=campaign), key=lambda s: s.size)
    total = text + largest.size + paths
    if total <= MAX_TASK_ARGUMENT:
        return total
    parts = {f"experiment file '{source}'": text, largest.field: largest.size, home_field: paths}
    field = max(parts, key=parts.get)
    raise TooLargeForTask(
        f"{field}: task '{largest.task}' would get a {total:,}-byte argument, more than the {MAX_TASK_ARGUMENT:,} "
        f"bytes Linux allows one argument (MAX_ARG_STRLEN, 128 KiB): the experiment file takes {text:,} bytes "
        f"JSON-escaped (newlines 2 bytes, non-ASCII characters 6), {largest.what} up to {largest.size:,}, output "
        f"paths under '{home}' {paths:,}; make the file smaller (remove comments and long descriptions, put large "
        "lists in data files), use fewer profiles, or a shorter home folder")
