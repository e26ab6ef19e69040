"""Shared test factories: run specs and the tiny experiment, defined once."""

from __future__ import annotations

import dataclasses

from driftlab.runs.spec import RunSpec

# A trainable spec: digits, the built-in MLP, two epochs (about a second on one core).
TRAINABLE = dict(dataset={"name": "digits"}, data_digest="d", builder="mlp",
                 hparams={"units": 16, "dropout": 0.1, "learning_rate": 0.003}, epochs=2, batch_size=64,
                 init_seed=0, shuffle_seed=0, split_seed=0, repeat=0, deterministic=True)


def run_spec(profile=None, **changes) -> RunSpec:
    """A run spec on ``profile`` (a ProfileConfig or its JSON; default cpu-default), fields overridden by ``changes``.

    Without a profile and with ``dataset`` left as is, the spec is for the store (never trained);
    ``trainable_spec`` gives one a worker can train.
    """
    from driftlab.config.profiles import profile_json

    if profile is None:
        profile = {"name": "cpu-default"}
    elif not isinstance(profile, dict):
        profile = profile_json(profile)
    base = RunSpec(experiment="exp", campaign="c", profile=profile,
                   **{**TRAINABLE, "hparams": {}, "epochs": 1, "batch_size": 8})
    return dataclasses.replace(base, **changes)


def trainable_spec(profile=None, **changes) -> RunSpec:
    """A spec a worker trains for real: the full digits dataset block, the MLP, two epochs."""
    from driftlab.config import DatasetConfig, ProfileConfig

    profile = profile or ProfileConfig(name="cpu-default")
    return run_spec(profile, **{**TRAINABLE, "dataset": DatasetConfig(name="digits").model_dump(mode="json"),
                                **changes})
