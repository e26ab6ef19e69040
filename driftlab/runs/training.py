"""One seeded training run: a run spec in, a run record out.

Call only in a process whose profile knobs were applied before TensorFlow was
imported (``driftlab.runs.worker`` does this). Sources of randomness are separated:

- ``init_seed`` seeds Keras (weights and dropout masks);
- ``shuffle_seed`` drives a NumPy generator of its own that orders the batches,
  so batch order never depends on the init seed (``fit(shuffle=True)`` would
  draw it from the global seed and entangle the two);
- ``split_seed`` picks the train/validation rows (see ``datasets``);
- ``deterministic`` switches TensorFlow's op determinism on or off.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import OrderedDict
from functools import lru_cache
from typing import Any

import numpy as np

from driftlab.contracts import RunRecord
from driftlab.runs import codec, datasets
from driftlab.config import DatasetConfig
from driftlab.runs.models import accepts_input_shape, build_model, resolve_builder
from driftlab.runs.predictions import predicted_classes
from driftlab.runs.spec import RunSpec
from driftlab import settings

SHUFFLE_STREAM = 0x5EED5  # separates the shuffle generator from any other use of the same seed


@lru_cache(maxsize=16)
def _split(dataset_json: str, split_seed: int) -> datasets.Split:
    import json

    return datasets.make_split(DatasetConfig.model_validate(json.loads(dataset_json)), split_seed)


def load_split(spec: RunSpec) -> datasets.Split:
    import json

    return _split(json.dumps(spec.dataset, sort_keys=True), spec.split_seed)


def _set_determinism(on: bool) -> None:
    from tensorflow.python.framework import config as tf_config

    if on:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


def metric_values(task: str, y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    if task == "classification":
        return {"accuracy": float(np.mean(predicted_classes(pred) == y_true))}
    err = pred.reshape(-1).astype(np.float64) - y_true.astype(np.float64)
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err)))}


def _keras_classes():
    import keras

    class ShuffledBatches(keras.utils.PyDataset):
        """Batches in an order drawn from the run's own shuffle generator, reshuffled each epoch."""

        def __init__(self, x, y, batch_size, rng):
            super().__init__(workers=1, use_multiprocessing=False)
            self.x, self.y, self.batch_size, self.rng = x, y, batch_size, rng
            self.order = rng.permutation(len(x))

        def __len__(self):
            return -(-len(self.x) // self.batch_size)

        def __getitem__(self, i):
            idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
            return self.x[idx], self.y[idx]

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(self.x))

    class EpochRecorder(keras.callbacks.Callback):
        """Per-epoch training loss and validation metric; stops on a non-finite loss."""

        def __init__(self, split, metric_name, epoch_callback):
            super().__init__()
            self.split, self.metric_name, self.epoch_callback = split, metric_name, epoch_callback
            self.history: dict[str, list[float]] = {"loss": [], "val_metric": []}
            self.status, self.error = "ok", None

        def on_epoch_end(self, epoch, logs=None):
            loss = float((logs or {}).get("loss", float("nan")))
            val_x = self.split.val.x
            pred = self.model.predict_on_batch(val_x) if len(val_x) <= 4096 else \
                self.model.predict(val_x, batch_size=1024, verbose=0)
            val = metric_values(self.split.task, self.split.val.y, np.asarray(pred))[self.metric_name]
            self.history["loss"].append(loss)
            self.history["val_metric"].append(val)
            if not math.isfinite(loss):
                self.status = "diverged"
                self.error = f"loss became {loss} at epoch {epoch + 1}; lower the learning rate"
                self.model.stop_training = True
                return
            if self.epoch_callback is not None:
                self.epoch_callback(epoch, {self.metric_name: val})

    return ShuffledBatches, EpochRecorder


def _ShuffledBatches(*args):
    return _keras_classes()[0](*args)


def _EpochRecorder(*args):
    return _keras_classes()[1](*args)


# -- reuse of traced models across runs (executor speed-up) ----------------------
#
# Keras traces ``fit``'s train step into a tf.function the first time a model
# trains (~0.9 s for the quickstart MLP, half of a run). A worker that trains
# many runs of the same architecture keeps one already traced model per
# architecture and, for each run, builds the run's model afresh (so weights
# and dropout seeds are drawn exactly as in a fresh process), copies every
# variable of it (weights and seed-generator states) into the traced model and
# restores the optimizer's pristine state. The arithmetic is the same graph on
# the same values, so the digest equals a fresh process's (tests/runs/test_executor.py
# proves it). Only the built-in ``mlp`` builder is reused by default: a user
# layer may draw op-level seeds at trace time, which a reused trace would
# freeze. DRIFTLAB_REUSE_MODELS=0 turns reuse off, =1 extends it to user builders.

REUSE_ENV = settings.REUSE_MODELS.name
MAX_CACHED_TRAINERS = 4


class _Trainer:
    """A traced model and its optimizer's state from before its first step."""

    def __init__(self, model: Any, optimizer_state: list[np.ndarray]):
        self.model = model
        self.optimizer_state = optimizer_state


_TRAINERS: "OrderedDict[str, _Trainer]" = OrderedDict()


def reuse_enabled(spec: RunSpec) -> bool:
    mode = os.environ.get(REUSE_ENV, "auto").strip().lower()
    if mode in ("0", "false", "off", "no"):
        return False
    if mode in ("1", "true", "on", "yes"):
        return True
    return spec.builder == "mlp"


def _trainer_key(spec: RunSpec, split: datasets.Split) -> str:
    # Everything that shapes the traced graph or the kernels chosen for it.
    # Op determinism is part of the key: kernels of a traced function are
    # instantiated once, under the determinism setting of that moment.
    shapes = [(a.x.shape[1:], str(a.x.dtype), a.y.shape[1:], str(a.y.dtype), len(a.x))
              for a in (split.train, split.val, split.eval)]
    return json.dumps([spec.builder, spec.hparams, spec.batch_size, spec.deterministic, split.task,
                       split.n_classes, shapes], sort_keys=True, default=str)


def _variables_match(src: list[Any], dst: list[Any]) -> bool:
    return len(src) == len(dst) and all(
        tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype for a, b in zip(src, dst))


def _trainer_for(spec: RunSpec, split: datasets.Split, fresh: Any) -> tuple[Any, bool]:
    """The model to fit: a traced one loaded with ``fresh``'s values, or ``fresh`` itself."""
    if not reuse_enabled(spec) or not fresh.built or fresh.optimizer is None or fresh.optimizer.built:
        return fresh, False
    key = _trainer_key(spec, split)
    cached = _TRAINERS.get(key)
    if cached is not None and _variables_match(fresh.variables, cached.model.variables):
        _TRAINERS.move_to_end(key)
        for src, dst in zip(fresh.variables, cached.model.variables):
            dst.assign(src.value)
        for var, value in zip(cached.model.optimizer.variables, cached.optimizer_state):
            var.assign(value)
        return cached.model, True
    # First run of this architecture here: it trains as it would anywhere; keep it for the next.
    fresh.optimizer.build(fresh.trainable_variables)
    state = [np.array(v.numpy(), copy=True) for v in fresh.optimizer.variables]
    _TRAINERS[key] = _Trainer(fresh, state)
    _TRAINERS.move_to_end(key)
    while len(_TRAINERS) > MAX_CACHED_TRAINERS:
        _TRAINERS.popitem(last=False)
    return fresh, False


def forget_trainers() -> None:
    """Drop every cached traced model (the next run of each architecture traces again)."""
    _TRAINERS.clear()


# clear_session() runs a full gc.collect() by default: ~0.17 s, a sixth of a
# reused quickstart run. Memory is not numerics: collect every few runs instead.
GC_EVERY_RUNS = 8
_runs_since_gc = 0


def _clear_session() -> None:
    import gc

    import keras

    global _runs_since_gc
    keras.backend.clear_session(free_memory=False)
    _runs_since_gc += 1
    if _runs_since_gc >= GC_EVERY_RUNS:
        gc.collect()
        _runs_since_gc = 0


def train(spec: RunSpec, *, epoch_callback=None) -> RunRecord:
    """Train one run and return its record (arrays as NumPy, not yet packed).

    ``epoch_callback(epoch, val_metrics)`` is called after each epoch; it may
    raise to stop the run (Optuna pruning does).
    """
    import keras

    t0 = time.perf_counter()
    split = load_split(spec)
    if len(split.input_shape) > 1 and not accepts_input_shape(resolve_builder(spec.builder)):
        split = datasets.flattened(split)  # images, to a builder that knows only n_features: rows of values
    _clear_session()
    _set_determinism(spec.deterministic)
    keras.utils.set_random_seed(spec.init_seed)
    n_out = split.n_classes if split.task == "classification" else 1
    model = build_model(spec.builder, spec.hparams, n_features=split.n_features, n_outputs=n_out, task=split.task,
                        input_shape=split.input_shape)
    if not model.built:  # Sequential([Dense(64), Dense(1)]) without an Input: build it so its weights exist now
        model.build((None, *split.input_shape))
    init_digest = codec.weights_digest(model.get_weights())
    model, reused = _trainer_for(spec, split, model)
    t_built = time.perf_counter()

    x, y = split.train.x, split.train.y
    batches = _ShuffledBatches(x, y, spec.batch_size, np.random.default_rng([spec.shuffle_seed, SHUFFLE_STREAM]))
    metric_name = "accuracy" if split.task == "classification" else "rmse"
    recorder = _EpochRecorder(split, metric_name, epoch_callback)
    t_fit = time.perf_counter()
    model.fit(batches, epochs=spec.epochs, shuffle=False, verbose=0, callbacks=[recorder])
    fit_seconds = time.perf_counter() - t_fit
    history = recorder.history
    status, error = recorder.status, recorder.error

    t_pred = time.perf_counter()
    pred = np.asarray(model.predict(split.eval.x, batch_size=1024, verbose=0), dtype=np.float32)
    predict_seconds = time.perf_counter() - t_pred
    if split.task == "regression":
        pred = pred.reshape(-1)
    weights = model.get_weights()
    vector, vector_kind = codec.weights_vector(weights)
    metrics = {f"eval_{k}": v for k, v in metric_values(split.task, split.eval.y, pred).items()}
    metrics[f"val_{metric_name}"] = history["val_metric"][-1] if history["val_metric"] else float("nan")
    if status == "ok" and not np.isfinite(pred).all():
        status, error = "diverged", "predictions contain NaN or inf"
    return {
        "key": spec.key,
        "status": status,
        "error": error,
        "task": split.task,
        "metrics": metrics,
        "history": history,
        "init_digest": init_digest,
        "weights_digest": codec.weights_digest(weights),
        "predictions": pred,
        "eval_labels": split.eval.y,
        "weights": vector,
        "weights_kind": vector_kind,
        "n_params": int(sum(w.size for w in weights)),
        "timings": {"build_s": t_built - t0, "fit_s": fit_seconds, "predict_s": predict_seconds,
                    "total_s": time.perf_counter() - t0, "trace_reused": reused},
    }
