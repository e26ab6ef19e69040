"""Model builders: the built-in MLP, or a user's ``module:function``.

A user builder is called as ``build(hparams, n_features=..., n_outputs=...,
task=...)`` and returns a ``keras.Model``; a builder whose signature has an
``input_shape`` parameter (or ``**kwargs``) also gets ``input_shape``, the
shape of one row of x (``(n_features,)``, or e.g. ``(8, 8, 1)`` for images).
If it is not compiled, driftlab compiles it with the optimizer and learning
rate from the hyperparameters. Builders are imported only from the experiment
file the user gave (see the README's trust boundary).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from driftlab.errors import BadInput

MLP_DEFAULTS: dict[str, Any] = {
    "units": 64,
    "layers": 1,
    "activation": "relu",
    "dropout": 0.0,
    "learning_rate": 1e-3,
    "optimizer": "adam",
}


class ModelBuildError(BadInput):
    """A model builder that cannot be used."""


def resolve_builder(spec: str) -> Callable[..., Any]:
    if spec == "mlp":
        return build_mlp
    module_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelBuildError(f"model.builder: cannot import module '{module_name}' ({exc}); "
                              "put it on PYTHONPATH or install it") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ModelBuildError(f"model.builder: '{module_name}' has no function '{func_name}'")
    return func


#: What ``hparams["optimizer"]`` may name when driftlab compiles the model (the builder did not).
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")


def _optimizer(name: str, learning_rate: float):
    if name not in OPTIMIZERS:
        raise ModelBuildError(f"model.hyperparameters.optimizer: '{name}' is not one of {list(OPTIMIZERS)}")
    import keras

    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
                  "rmsprop": keras.optimizers.RMSprop, "adamw": keras.optimizers.AdamW}
    return optimizers[name](learning_rate=float(learning_rate))


def build_mlp(hparams: dict[str, Any], *, n_features: int, n_outputs: int, task: str,
              input_shape: tuple[int, ...] | None = None):
    import keras

    hp = {**MLP_DEFAULTS, **hparams}
    unknown = set(hp) - set(MLP_DEFAULTS)
    if unknown:
        raise ModelBuildError(f"model.hyperparameters: the mlp builder does not know {sorted(unknown)}; "
                              f"it takes {sorted(MLP_DEFAULTS)}")
    units = hp["units"]
    widths = list(units) if isinstance(units, list) else [int(units)] * int(hp["layers"])
    if input_shape is not None and len(input_shape) > 1:  # images: the MLP sees them flattened
        layers: list[Any] = [keras.Input(tuple(input_shape)), keras.layers.Flatten()]
    else:
        layers = [keras.Input((n_features,))]
    for width in widths:
        layers.append(keras.layers.Dense(int(width), activation=hp["activation"]))
        if float(hp["dropout"]) > 0:
            layers.append(keras.layers.Dropout(float(hp["dropout"])))
    if task == "classification":
        layers.append(keras.layers.Dense(n_outputs, activation="softmax"))
    else:
        layers.append(keras.layers.Dense(1))
    return keras.Sequential(layers)


def accepts_input_shape(func: Callable[..., Any]) -> bool:
    """Whether a builder takes ``input_shape`` (a parameter of that name, or ``**kwargs``)."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a C function): pass only the classic arguments
        return False
    return any(p.kind is p.VAR_KEYWORD or (p.name == "input_shape" and p.kind is not p.VAR_POSITIONAL
                                          and p.kind is not p.POSITIONAL_ONLY) for p in params)


def build_model(builder: str, hparams: dict[str, Any], *, n_features: int, n_outputs: int, task: str,
                input_shape: tuple[int, ...] | None = None):
    """Build and compile the model for one run (weights drawn from the current init seed).

    ``input_shape`` (default ``(n_features,)``) reaches a builder that accepts it.
    """
    import keras

    hp = dict(hparams)
    func = resolve_builder(builder)
    kwargs: dict[str, Any] = {"n_features": n_features, "n_outputs": n_outputs, "task": task}
    if accepts_input_shape(func):
        kwargs["input_shape"] = tuple(input_shape) if input_shape is not None else (n_features,)
    if builder != "mlp":
        try:
            model = func(hp, **kwargs)
        except Exception as exc:  # user code: report, do not crash the worker
            raise ModelBuildError(f"model.builder: '{builder}' raised {type(exc).__name__}: {exc}") from exc
    else:
        model = func(hp, **kwargs)
    if not isinstance(model, keras.Model):
        raise ModelBuildError(f"model.builder: '{builder}' returned {type(model).__name__}, not a keras.Model")
    if not getattr(model, "compiled", False):
        loss = "sparse_categorical_crossentropy" if task == "classification" else "mse"
        model.compile(optimizer=_optimizer(str(hp.get("optimizer", "adam")),
                                           float(hp.get("learning_rate", MLP_DEFAULTS["learning_rate"]))),
                      loss=loss)
    return model
