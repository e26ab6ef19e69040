"""What ``driftlab validate`` and ``driftlab run`` refuse without training, before anything is written.

In order, cheapest first, and nothing is created: the folders driftlab would write
(``config.folders``); the built-in mlp's hyperparameters at every check point
(``hparam_points``); a builder from the standard library, refused by name; the memory one
training process needs against what this process may use; then the builder, imported and
built once on a dummy batch in a child process (``build_check``), and the memory again with
the model's real size. Every refusal is ``BadInput`` naming the field and the fix.

Memory of one training process: the data, ``rows × values per row × 4`` bytes (float32)
times ``DATA_COPIES`` (the copies alive while a split is made: measured 6.7 for
synthetic-regression), plus ``parameters × 4 × MODEL_COPIES`` (weights, gradients, two Adam
moments, the initial and final weights read back, the packed record), plus
``PROCESS_BASELINE`` for TensorFlow itself. What this process may use: the smallest of
``MemAvailable`` (``/proc/meminfo``) and, for its cgroup v2 and each cgroup above it,
``memory.max - memory.current``.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from driftlab import settings
from driftlab.config import ExperimentConfig
from driftlab.config.folders import Mount, check_writable_folder, mounts
from driftlab.errors import BadInput
from driftlab.runs.build_check import (BuilderRefused, Built, Shapes, check_builder, check_builder_name,
                                       timed_out)
from driftlab.runs.hparam_points import Point, check_mlp, mlp_parameters, points

FLOAT_BYTES = 4
DATA_COPIES = 7
MODEL_COPIES = 8
PROCESS_BASELINE = 512 * 2**20


class NotEnoughMemory(BadInput):
    """An experiment one training process cannot hold in the memory this machine gives it."""


def human(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def _meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cgroup_room(cgroup_file: Path = Path("/proc/self/cgroup"), table: list[Mount] | None = None) -> int | None:
    """The least ``memory.max - memory.current`` of this process's cgroup v2 and its ancestors; None: no limit."""
    try:
        lines = cgroup_file.read_text().splitlines()
    except OSError:
        return None
    own = next((line[3:] for line in lines if line.startswith("0::")), None)
    if own is None:
        return None
    room = None
    for mount in (m for m in (mounts() if table is None else table) if m.fstype == "cgroup2"):
        folder = Path(mount.point + own.rstrip("/"))
        while True:
            try:
                limit = (folder / "memory.max").read_text().strip()
                used = int((folder / "memory.current").read_text().strip())
                if limit != "max":
                    room = min(room if room is not None else 2**63, max(0, int(limit) - used))
            except (OSError, ValueError):
                pass
            if str(folder) == mount.point or folder == folder.parent:
                break
            folder = folder.parent
    return room


def available_memory() -> tuple[int | None, str]:
    """Bytes this process may still use, and where that figure comes from; (None, ...) when unknown."""
    found = [(n, where) for n, where in ((_meminfo_available(), "MemAvailable in /proc/meminfo"),
                                         (cgroup_room(), "its cgroup's memory.max")) if n is not None]
    return min(found) if found else (None, "unknown")


def data_shapes(config: ExperimentConfig, split=None) -> tuple[Shapes, int]:
    """What the builder gets and how many rows a run loads; synthetic data is not generated for it."""
    dataset = config.dataset
    if dataset.name == "synthetic-regression":
        return Shapes((dataset.n_features,), "regression", 0), dataset.n_samples
    if split is None:
        from driftlab.runs.datasets import make_split

        split = make_split(dataset, config.seeds.split[0])
    rows = len(split.train.x) + len(split.val.x) + len(split.eval.x)
    return Shapes(split.input_shape, split.task, split.n_classes), rows


def memory_needed(rows: int, values_per_row: int, n_params: int) -> tuple[int, int, int]:
    """(total, data, model) bytes one training process needs (see the module doc)."""
    data = rows * values_per_row * FLOAT_BYTES * DATA_COPIES
    model = n_params * FLOAT_BYTES * MODEL_COPIES
    return data + model + PROCESS_BASELINE, data, model


def check_memory(config: ExperimentConfig, shapes: Shapes, rows: int, n_params: int, model_field: str) -> int:
    """Refuse an experiment one training process cannot hold; return the estimate in bytes."""
    total, data, model = memory_needed(rows, shapes.n_features, n_params)
    available, where = available_memory()
    if available is None or total <= available:
        return total
    if data >= model:
        synthetic = config.dataset.name == "synthetic-regression"
        field = "dataset.n_samples" if synthetic else "dataset.path"
        fix = ("use fewer rows or features (dataset.n_samples, dataset.n_features)" if synthetic else
               "use a smaller data file, or fewer features")
    else:
        field, fix = model_field, "use a smaller model (fewer or narrower layers)"
    raise NotEnoughMemory(
        f"{field}: one training process would need about {human(total)} of memory, more than the "
        f"{human(available)} this process may use ({where}): the data {rows:,} rows × {shapes.n_features:,} values "
        f"× {FLOAT_BYTES} bytes, about {DATA_COPIES} copies while a split is made ({human(data)}), the model "
        f"{n_params:,} parameters ({human(model)}), TensorFlow {human(PROCESS_BASELINE)}; {fix}")


@dataclass(frozen=True)
class Checked:
    """What the checks found, for ``driftlab validate`` to print."""

    shapes: Shapes
    rows: int
    built: Built
    memory: int
    available: int | None
    available_from: str

    def lines(self, builder: str) -> list[str]:
        if not self.built.points:
            model = f"model: '{builder}' imported (it is built at run time, with the existing study's parameters)"
        else:
            shapes = sorted({tuple(s) for s in self.built.outputs})
            model = (f"model: '{builder}' built on a dummy batch at {self.built.points} hyperparameter point(s), "
                     f"outputs {', '.join(map(str, shapes))}, up to {self.built.n_params:,} parameters")
        room = f" of the {human(self.available)} available ({self.available_from})" if self.available else ""
        return [model, f"memory: about {human(self.memory)} per training process{room}"]


def check_folders(home: Path, home_field: str, campaign: str | None) -> None:
    """The home folder and what driftlab run writes in it: reports of the campaign, logs, kfp's task files."""
    check_writable_folder(home, home_field)
    for sub in (Path("reports") / (campaign or "default"), Path("logs"), Path("kfp")):
        check_writable_folder(home / sub, home_field)


def check(config: ExperimentConfig, *, home: Path, home_field: str, campaign: str | None, split=None,
          profile=None) -> Checked:
    """Every check of the module doc; raises the first refusal.

    ``profile``: under ``driftlab run`` (a worker depot serves), the model is built once in a lent
    training worker of this profile (``check_in_worker``), else in a process of its own.
    """
    check_folders(home, home_field, campaign)
    builder = config.model.builder
    found: list[Point] = points(config)
    if builder == "mlp":
        for point in found:
            check_mlp(point)
    check_builder_name(builder)
    shapes, rows = data_shapes(config, split)
    model_field = "model.builder"
    n_params = 0
    if builder == "mlp":
        sizes = [(mlp_parameters(p.hparams, n_features=shapes.n_features, n_outputs=shapes.n_outputs), p)
                 for p in found]
        n_params, largest = max(sizes, key=lambda s: s[0])
        model_field = largest.field_of("units")
    check_memory(config, shapes, rows, n_params, model_field)  # before building: the mlp's size is known
    build = not (config.tuning.study and builder != "mlp")  # a user builder needs the study's parameters
    in_worker = functools.partial(check_in_worker, builder, profile) if profile and settings.WORKER_DEPOT.raw() \
        else None
    built = check_builder(builder, shapes, [asdict(p) for p in found], build=build, in_worker=in_worker)
    total = check_memory(config, shapes, rows, max(n_params, built.n_params), model_field)
    available, where = available_memory()
    return Checked(shapes, rows, built, total, available, where)



def check_in_worker(builder: str, profile, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """``build_check``'s answer from a training worker of ``profile`` (lent by the run's depot, then kept warm)."""
    from driftlab.runs.executor import RunTimedOut, Worker, WorkerDied

    try:
        worker = Worker(profile)
    except WorkerDied as exc:
        raise BuilderRefused(f"model.builder: the process building '{builder}' once {exc}") from None
    try:
        return worker.check(request, timeout_s=timeout)
    except RunTimedOut:
        raise timed_out(builder, timeout) from None
    except WorkerDied as exc:
        hint = " (out of memory?)" if "code -9" in str(exc) else ""
        raise BuilderRefused(f"model.builder: the process building '{builder}' once died before answering"
                             f"{hint}: {exc}") from None
    finally:
        worker.close()
