"""Run specs: everything that determines one training run, and its key.

The key is a hash of the canonical spec: the same key is never trained twice,
so re-running a stage resumes instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunSpec:
    experiment: str
    campaign: str
    dataset: dict[str, Any]
    data_digest: str
    builder: str
    hparams: dict[str, Any]
    epochs: int
    batch_size: int
    init_seed: int
    shuffle_seed: int
    split_seed: int
    repeat: int
    deterministic: bool
    profile: dict[str, Any]
    stage: str = field(default="seeds", compare=False)  # which stage asked for it; not part of the key
    # The plan hash of the experiment that planned it (driftlab.config.plan_hash): stored with the
    # run so a campaign never mixes two experiments; not part of the key.
    plan: str = field(default="", compare=False)

    @property
    def profile_name(self) -> str:
        return str(self.profile["name"])

    def canonical(self) -> str:
        body = asdict(self)
        body.pop("stage")
        body.pop("plan")
        return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:24]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunSpec":
        return cls(**data)
