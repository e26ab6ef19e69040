"""Import the model builder and build the model once on a dummy batch, before anything is written.

``check_builder`` runs ``python -m driftlab.runs.build_check`` in the current folder, as the
pipeline's tasks import builders, with the workers' environment (no database credential) and
no GPU: TensorFlow is imported there, never in the calling process, and a builder that hangs,
exits or exhausts memory only ends that process. The child, in order, and nothing is called
before the checks that come first:

1. refuses a builder module of the standard library or a built-in one (``os:system``,
   ``subprocess:run``, ``builtins:eval``) without importing it (``check_builder_name``);
2. imports the module and refuses an object that is not a function or class defined in
   Python source outside the standard library, or whose signature does not take
   ``(hparams, *, n_features, n_outputs, task)``;
3. for each check point (``hparam_points``) builds the model as a run does
   (``models.build_model``) and calls it on a batch of zeros of the dataset's shape: the
   output must be ``(batch, n_classes)`` (or one sigmoid column for two classes) for
   classification, ``(batch, 1)`` for regression.

A refusal is one message naming the field, the user's own frames below it (``failures.describe``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftlab import settings
from driftlab.errors import BadInput
from driftlab.runs.models import ModelBuildError

BATCH = 2
_MARK = "driftlab-build-check:"


class BuilderRefused(ModelBuildError):
    """A builder that must not be called, or cannot build a model for this experiment."""


@dataclass(frozen=True)
class Shapes:
    """What a run hands the builder: one row of x, the task, the classes (0 for regression)."""

    input_shape: tuple[int, ...]
    task: str
    n_classes: int

    @property
    def n_features(self) -> int:
        return int(math.prod(self.input_shape))

    @property
    def n_outputs(self) -> int:
        return self.n_classes if self.task == "classification" else 1


@dataclass(frozen=True)
class Built:
    """What the check found: the largest model's parameter count and the output shapes seen."""

    n_params: int
    outputs: list[list[int]]
    points: int


def _standard_library(module: str) -> bool:
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names or top == "__main__"


def check_builder_name(builder: str) -> None:
    """Refuse a ``module:function`` from the standard library before anything is imported or called."""
    module = builder.partition(":")[0]
    if builder != "mlp" and _standard_library(module):
        raise BuilderRefused(f"model.builder: '{builder}' names the Python standard library module '{module}', "
                             "not a model builder (calling it could run anything, e.g. a shell command); give "
                             "your own module:function that returns a keras.Model")


# -- the parent side -------------------------------------------------------------------------------------------

def check_builder(builder: str, shapes: Shapes, points: list[dict[str, Any]], *, build: bool = True,
                  in_worker: Callable[[dict[str, Any], float], dict[str, Any]] | None = None) -> Built:
    """Run the check in a child process; raise ``BuilderRefused`` with its message, else what it built.

    ``points``: ``{"hparams": {...}, "origin": {...}}`` each (``hparam_points.Point``). ``build=False``
    stops after the import and signature checks (an existing study's parameters are not known yet).
    ``in_worker(request, timeout)``: answers the request elsewhere (``driftlab run`` asks a lent
    training worker, which the first tasks then train on: one TensorFlow import less before the
    first trial).
    """
    from driftlab.storage.secret_env import child_env

    check_builder_name(builder)
    timeout = float(settings.positive_int(settings.BUILD_CHECK_TIMEOUT_S.name, example=600, error=BadInput) or
                    settings.BUILD_CHECK_TIMEOUT_S.default)
    request = {"builder": builder, "input_shape": list(shapes.input_shape), "task": shapes.task,
               "n_classes": shapes.n_classes, "points": points, "build": build}
    if in_worker is not None:  # driftlab run: in a lent training worker (``preflight.check_in_worker``)
        return result_of(builder, in_worker(request, timeout))
    # As a worker's: no database credential; no GPU (a model is built, not trained); no .pyc left behind.
    env = {**child_env(), "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
           "PYTHONDONTWRITEBYTECODE": "1", settings.BUILD_CHECK.name: "1"}
    try:
        proc = subprocess.run([sys.executable, "-m", "driftlab.runs.build_check"], input=json.dumps(request),
                              capture_output=True, text=True, env=env, cwd=os.getcwd(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise timed_out(builder, timeout) from None
    answer = next((line[len(_MARK):] for line in reversed(proc.stdout.splitlines()) if line.startswith(_MARK)), None)
    if answer is None:
        tail = " | ".join(line.strip() for line in proc.stderr.strip().splitlines()[-3:]) or "no output"
        how = f"was killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited with {proc.returncode}"
        hint = " (out of memory?)" if proc.returncode == -9 else ""
        raise BuilderRefused(f"model.builder: the process building '{builder}' once {how}{hint} before answering: "
                             f"{tail[-600:]}")
    return result_of(builder, json.loads(answer))


def timed_out(builder: str, timeout: float) -> BuilderRefused:
    return BuilderRefused(f"model.builder: importing and building '{builder}' once took longer than "
                          f"{timeout:.0f} s; make the builder faster, or raise {settings.BUILD_CHECK_TIMEOUT_S.name}")


def result_of(builder: str, result: dict[str, Any]) -> Built:
    """What the check built, or ``BuilderRefused`` with its reason."""
    if "crashed" in result:
        raise BuilderRefused(f"model.builder: building '{builder}' once crashed: {result['crashed'][-600:]}")
    if "refused" in result:
        raise BuilderRefused(result["refused"])
    return Built(int(result["n_params"]), result["outputs"], int(result["points"]))


# -- the child side --------------------------------------------------------------------------------------------

def _stdlib_dirs() -> tuple[str, ...]:
    return tuple(sorted({os.path.realpath(p) for k in ("stdlib", "platstdlib") if (p := sysconfig.get_paths().get(k))}))


def _not_a_builder(obj: Any) -> str | None:
    """Why ``obj`` must not be called as a builder; None when it is a function or class in Python source."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return f"is a {type(obj).__name__}, not a function or class defined in Python"
    module = getattr(obj, "__module__", "") or ""
    if _standard_library(module):
        return f"is '{module}.{obj.__qualname__}' of the Python standard library, not a model builder"
    try:
        source = inspect.getsourcefile(obj) or ""
    except TypeError:
        source = ""
    if not source.endswith(".py"):
        return "is not defined in Python source (a compiled or built-in object)"
    real = Path(os.path.realpath(source))
    if any(d in ("site-packages", "dist-packages") for d in real.parts):
        return None
    if any(str(real).startswith(d + os.sep) for d in _stdlib_dirs()):
        return f"is defined in the Python standard library ({real}), not a model builder"
    return None


SIGNATURE = "(hparams, *, n_features, n_outputs, task)"


def _resolve(builder: str):
    """Import the builder without calling it; a ``BuilderRefused`` says why it cannot be used."""
    from driftlab.runs import models
    from driftlab.runs.failures import first_line

    if builder == "mlp":
        return models.build_mlp
    module_name, _, name = builder.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise BuilderRefused(f"model.builder: cannot import module '{module_name}' ({exc}); run driftlab in the "
                                 "folder that holds it, put it on PYTHONPATH, or install it") from None
        raise ModelBuildError(f"model.builder: importing '{module_name}' raised {first_line(exc)}") from exc
    except Exception as exc:  # user code at import time: a refusal with the user's frames
        raise ModelBuildError(f"model.builder: importing '{module_name}' raised {first_line(exc)}") from exc
    obj = getattr(module, name, None)
    if obj is None:
        raise BuilderRefused(f"model.builder: module '{module_name}' ({getattr(module, '__file__', '?')}) has no "
                             f"'{name}'; give the name of its builder function")
    why = _not_a_builder(obj)
    if why:
        raise BuilderRefused(f"model.builder: '{builder}' {why}; point it at your own "
                             f"`def build{SIGNATURE}` that returns a keras.Model")
    try:
        signature = inspect.signature(obj)
        signature.bind({}, n_features=1, n_outputs=1, task="classification",
                       **({"input_shape": (1,)} if models.accepts_input_shape(obj) else {}))
    except (TypeError, ValueError) as exc:
        raise BuilderRefused(f"model.builder: '{builder}' cannot be called as a builder {SIGNATURE} ({exc}); "
                             f"driftlab calls build(hparams, n_features=..., n_outputs=..., task=...)") from None
    return obj


def _output_problem(shape: tuple[int, ...], shapes: Shapes) -> str | None:
    if shapes.task == "regression":
        ok = shape in ((BATCH,), (BATCH, 1))
        want = "one value per row: a last layer of 1 unit, shape (batch, 1)"
    else:
        ok = shape == (BATCH, shapes.n_classes) or (shapes.n_classes == 2 and shape in ((BATCH,), (BATCH, 1)))
        want = (f"one column per class: a last layer of {shapes.n_classes} units (softmax), shape (batch, "
                f"{shapes.n_classes})" + (", or 1 sigmoid unit" if shapes.n_classes == 2 else ""))
    return None if ok else f"returns outputs of shape {shape} for a batch of {BATCH}; {shapes.task} needs {want}"


def _build_one(builder: str, func, hparams: dict[str, Any], shapes: Shapes) -> tuple[int, list[int]]:
    import keras
    import numpy as np

    from driftlab.runs import models
    from driftlab.runs.failures import first_line, users_exception

    input_shape = shapes.input_shape
    if len(input_shape) > 1 and not models.accepts_input_shape(func):
        input_shape = (shapes.n_features,)  # as a run does: images, flattened, to a builder without input_shape
    keras.utils.set_random_seed(0)
    model = models.build_model(builder, hparams, n_features=shapes.n_features, n_outputs=shapes.n_outputs,
                               task=shapes.task, input_shape=shapes.input_shape)
    x = np.zeros((BATCH, *input_shape), dtype=np.float32)
    try:
        out = model(x, training=False)
    except Exception as exc:
        raise ModelBuildError(f"model.builder: '{builder}' fails on a batch of shape {x.shape}: "
                              f"{first_line(users_exception(exc))}") from exc
    if isinstance(out, (list, tuple, dict)):
        raise BuilderRefused(f"model.builder: '{builder}' returns a model with {len(out)} outputs; driftlab trains "
                             "models with one output")
    shape = tuple(int(d) for d in out.shape)
    problem = _output_problem(shape, shapes)
    if problem:
        raise BuilderRefused(f"model.builder: '{builder}' {problem}")
    n_params = int(model.count_params())
    keras.backend.clear_session(free_memory=False)
    return n_params, list(shape)


def _check_activations(points: list[dict[str, Any]]) -> None:
    import keras

    for point in points:
        value = point["hparams"].get("activation", "relu")
        try:
            keras.activations.get(value)
        except (ValueError, TypeError):
            where = point["origin"].get("activation", "model.hyperparameters.activation").split(" ")[0]
            raise BuilderRefused(f"{where}: {value!r} is not a Keras activation; use e.g. relu, tanh, gelu, "
                                 "sigmoid, elu, selu or linear") from None


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """The child's work on one request: ``{"n_params", "outputs", "points"}`` or ``{"refused": message}``."""
    from driftlab.runs.failures import describe

    builder = request["builder"]
    shapes = Shapes(tuple(request["input_shape"]), request["task"], int(request["n_classes"]))
    points = request["points"]
    try:
        check_builder_name(builder)
        func = _resolve(builder)
        if not request.get("build", True):
            return {"n_params": 0, "outputs": [], "points": 0}
        if builder == "mlp":
            _check_activations(points)
        sizes, outputs = [], []
        for point in points:
            try:
                n_params, shape = _build_one(builder, func, point["hparams"], shapes)
            except BuilderRefused:
                raise
            except Exception as exc:  # the builder (or Keras beneath it) raised: its message and frames
                return {"refused": _refusal(builder, exc, point)}
            sizes.append(n_params)
            outputs.append(shape)
        return {"n_params": max(sizes), "outputs": outputs, "points": len(points)}
    except BadInput as exc:  # BuilderRefused, ModelBuildError: a cause is user code, shown with its frames
        return {"refused": describe(exc) if exc.__cause__ is not None else str(exc)}


def _refusal(builder: str, exc: BaseException, point: dict[str, Any]) -> str:
    """``failures.describe`` of a failed build, with the tuned values it was built with under the first line."""
    from driftlab.runs.failures import describe

    head, _, frames = describe(exc).partition("\n")
    optimizer = "model.hyperparameters.optimizer"
    if head.startswith(optimizer) and "optimizer" in point["origin"]:  # the value came from the search space
        head = point["origin"]["optimizer"].split(" ")[0] + head[len(optimizer):]
    elif not head.startswith(("model.", "search_space.")):  # Keras raised inside the built-in mlp
        head = f"model.hyperparameters: the mlp builder cannot build with them: {head}"
    tuned = ", ".join(f"{n}={point['hparams'][n]!r} ({point['origin'][n]})" for n in sorted(point["origin"]))
    return "\n".join(filter(None, [head, f"  with {tuned}" if tuned else "", frames]))


def main() -> None:
    """Read one request on stdin, answer one line on stdout; user code's own output goes to stderr."""
    request = json.loads(sys.stdin.read())
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # print() in user code, and C libraries writing to fd 1, land on stderr
    sys.stdout = sys.stderr
    result = answer(request)
    channel.write(_MARK + json.dumps(result) + "\n")
    channel.flush()


if __name__ == "__main__":
    main()
