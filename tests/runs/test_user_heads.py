"""Models written the way Keras users write them: no Input layer, a one-unit sigmoid head."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from driftlab.config import DatasetConfig, ProfileConfig
from driftlab.config.profiles import profile_json
from driftlab.runs import codec
from driftlab.runs.executor import Worker
from driftlab.runs.predictions import predicted_classes
from driftlab.runs.spec import RunSpec


def test_one_sigmoid_column_is_thresholded_not_argmaxed():
    p = np.array([[0.1], [0.9], [0.6], [0.4]], dtype=np.float32)
    assert predicted_classes(p).tolist() == [0, 1, 1, 0]
    assert np.argmax(p, axis=1).tolist() == [0, 0, 0, 0], "control: argmax of one column is always class 0"
    assert predicted_classes(np.array([-2.0, 3.0, 0.5])).tolist() == [0, 1, 1], "logits threshold at 0"
    assert predicted_classes(np.array([[0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])).tolist() == [1, 0]


@pytest.fixture(scope="module")
def binary_npz(tmp_path_factory):
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    path = tmp_path_factory.mktemp("data") / "cancer.npz"
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))
    return path


def spec(builder: str, dataset: dict, **changes) -> RunSpec:
    base = RunSpec(experiment="t", campaign="c", dataset=dataset, data_digest="d", builder=builder, hparams={},
                   epochs=3, batch_size=32, init_seed=0, shuffle_seed=0, split_seed=0, repeat=0,
                   deterministic=True, profile=profile_json(ProfileConfig(name="cpu-default")))
    return dataclasses.replace(base, **changes)


@pytest.mark.slow
def test_user_heads_train_and_score_for_real(binary_npz):
    worker = Worker(ProfileConfig(name="cpu-default"))
    try:
        cancer = DatasetConfig(name="npz", path=str(binary_npz)).model_dump(mode="json")
        sig = worker.run(spec("user_builders:sigmoid_binary", cancer))
        assert sig["status"] == "ok", sig.get("error")
        share_benign = float(np.mean(sig["eval_labels"] == 1))
        assert sig["metrics"]["eval_accuracy"] > 0.85 > max(share_benign, 1 - share_benign), \
            "a one-unit sigmoid head is scored as a classifier, not as a constant guess"

        digits = DatasetConfig(name="digits").model_dump(mode="json")
        a = worker.run(spec("user_builders:sequential_without_input", digits, init_seed=0))
        b = worker.run(spec("user_builders:sequential_without_input", digits, init_seed=1))
        assert a["status"] == b["status"] == "ok", (a.get("error"), b.get("error"))
        empty = codec.weights_digest([])
        assert a["init_digest"] != empty and a["init_digest"] != b["init_digest"], \
            "a model without an Input layer records the weights its init seed drew"
        again = worker.run(spec("user_builders:sequential_without_input", digits, init_seed=0, repeat=1))
        assert again["init_digest"] == a["init_digest"] and again["weights_digest"] == a["weights_digest"]
    finally:
        worker.close()
