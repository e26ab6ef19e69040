"""Bounded inputs, bad data files, strict parsing (issue 14, defects 3, 4 and 6), through real processes.

Each case runs ``python -m driftlab ...`` in an empty working folder, under a 2 GiB address-space
cap (a regression fails there instead of filling the machine's memory), and must exit 2 within
5 s and 500 MB peak RSS, naming the file or field and the fix, with no traceback, and write
nothing: no home folder, no results database, nothing in the working folder. Every limit has a
control: an input just under it is accepted.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from support.faults import figure

MAX_S, MAX_MB = 5.0, 500
ADDRESS_SPACE = 2 * 2**30
EXPERIMENT = "name: limits\ndataset: {name: digits}\nprofiles: {pools: [{name: cpu-default}]}\n"


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    seconds: float
    peak_mb: float


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def driftlab(args: list[str], work: Path, env: dict[str, str] | None = None, timeout: float = 120) -> Outcome:
    """``python -m driftlab *args`` with ``work`` as its folder, home and database; time and peak RSS by wait4."""
    full = {**os.environ, "DRIFTLAB_HOME": str(work / "home"),
            "DRIFTLAB_DB_URL": f"sqlite:///{work / 'results.sqlite'}", **(env or {})}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "driftlab", *args], cwd=work, env=full, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_cap_memory,
                            start_new_session=True)
    streams: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda n, s: streams.__setitem__(n, s.read()), args=(n, s))
               for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, 9))
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    seconds = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    return Outcome(proc.returncode, streams["out"].decode(errors="replace"), streams["err"].decode(errors="replace"),
                   seconds, usage.ru_maxrss / 1024)


class Cases:
    """The refusals of one test: each checked, the slowest time and the highest peak kept for its figure."""

    def __init__(self, tmp_path: Path):
        self.root, self.n, self.seconds, self.peak_mb = tmp_path, 0, 0.0, 0.0

    def work(self) -> Path:
        work = self.root / f"work-{self.n}-{time.monotonic_ns()}"
        work.mkdir()
        return work

    def refused(self, args: list[str], *needles: str, env: dict[str, str] | None = None) -> str:
        work = self.work()
        if args[0] == "run":
            args = [*args, "--home", str(work / "home")]
        got = driftlab(args, work, env)
        shown = f"{args}: exit {got.code} in {got.seconds:.1f} s, {got.peak_mb:.0f} MB\n{got.err[-3000:]}"
        assert got.code == 2, shown
        for needle in needles:
            assert needle in got.err, f"the message does not name {needle!r}: {shown}"
        assert "Traceback" not in got.err + got.out, shown
        assert got.seconds < MAX_S and got.peak_mb < MAX_MB, shown
        assert list(work.iterdir()) == [], f"a refused input wrote {list(work.iterdir())}"
        self.n += 1
        self.seconds, self.peak_mb = max(self.seconds, got.seconds), max(self.peak_mb, got.peak_mb)
        return got.err

    def accepted(self, args: list[str], env: dict[str, str] | None = None, codes: tuple[int, ...] = (0,)) -> str:
        got = driftlab(args, self.work(), env)
        assert got.code in codes, f"{args}: the control was refused (exit {got.code}):\n{got.err[-3000:]}"
        return got.out

    def figure(self, request, fault: str, note: str = "") -> None:
        """RELIABILITY.md's row: nothing is trained or written, so no run is lost, duplicated or wasted."""
        measured = f"rejected in {self.seconds:.1f} s at most, peak {self.peak_mb:.0f} MB at most"
        row = figure(request, fault, cases=self.n, note=measured + note)
        row.update(lost=0, duplicates=0, wasted=0)


def experiment(folder: Path, name: str, dataset: str) -> Path:
    path = folder / name
    path.write_text(f"name: limits\ndataset: {dataset}\nprofiles: {{pools: [{{name: cpu-default}}]}}\n")
    return path


def padded(text: str, size: int) -> bytes:
    """``text`` and a comment line: exactly ``size`` bytes of YAML."""
    data = text.encode()
    return data + b"#" + b"x" * (size - len(data) - 2) + b"\n"


def csv_of_size(size: int) -> bytes:
    """A valid csv (header ``a,label``, two classes) of exactly ``size`` bytes."""
    head, row = b"a,label\n", b"1,0\n2,1\n"
    rows = (size - len(head) - 16) // len(row)
    data = head + row * rows
    last = size - len(data)  # one more row, its feature padded with zeros: "0.000...5,1\n"
    return data + b"0." + b"0" * (last - 6) + b"5,1\n"


REPORT = '{"gate": {"status": "PASS", "checks": []}, "hardware": {}, "sources": {}, "metric": {"name": "accuracy"}}'


def synthetic_report() -> dict:
    """A complete report of a synthetic campaign, as `driftlab run` writes it (tests/report/test_report_cli.py)."""
    from driftlab.config import ExperimentConfig
    from driftlab.drift import analyze
    from support.synthetic import SyntheticPlan, generate

    cfg = ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "digits"}, "profiles": {"auto": True}})
    plan = SyntheticPlan(profiles=("ref", "gpu-a"), sigmas={"init": 0.02, "shuffle": 0.02, "hardware": 0.01},
                         n_eval=50, seed=0, flip_rate=0.3)
    result = analyze(generate(plan), cfg, reference="ref")
    result["experiment"] = {"name": "syn", "campaign": "c0", "task": "classification"}
    return result


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


# -- defect 3: only regular files ------------------------------------------------------------------------
def test_devices_fifos_folders_and_proc_files_are_refused(tmp_path, fifo, request):
    cases = Cases(tmp_path)
    for odd in ("/dev/zero", str(fifo), str(tmp_path)):
        cases.refused(["validate", odd], odd, "not a regular file")
        cases.refused(["gate", odd], odd, "not a regular file")
        cases.refused(["report", "show", odd], odd, "not a regular file")
        for kind, extra in (("csv", ", target: label"), ("npz", "")):
            config = experiment(tmp_path, f"{kind}-{abs(hash(odd))}.yaml", f"{{name: {kind}, path: {odd}{extra}}}")
            cases.refused(["validate", str(config)], "dataset.path", odd, "not a regular file")
    # /proc files say they are empty: the read itself stops one byte past the limit.
    cases.refused(["validate", "/proc/self/smaps"], "/proc/self/smaps", "DRIFTLAB_MAX_CONFIG_BYTES",
                  env={"DRIFTLAB_MAX_CONFIG_BYTES": "1KiB"})
    cases.refused(["gate", "/proc/self/smaps"], "/proc/self/smaps", "DRIFTLAB_MAX_REPORT_BYTES",
                  env={"DRIFTLAB_MAX_REPORT_BYTES": "1KiB"})
    (tmp_path / "report.json").write_text(REPORT)  # control: a regular report is read
    assert "gate: PASS" in cases.accepted(["gate", str(tmp_path / "report.json")])
    cases.figure(request, "input that is not a regular file (/dev/zero, FIFO, folder, /proc) as experiment, data or "
                 "report path")


# -- defect 3: size limits ----------------------------------------------------------------------------------
def test_experiment_files_over_the_limit_are_refused_before_parsing(tmp_path, request):
    cases = Cases(tmp_path)
    huge = tmp_path / "huge.yaml"  # the attack: 50 MB of YAML took 234 s and 5 GB to be refused
    with huge.open("wb") as fh:
        fh.write(EXPERIMENT.encode())
        for _ in range(50):
            fh.write(b"- [1, 2, 3, 4, 5, 6, 7, 8, 9]\n" * 33_000)
    over, under = tmp_path / "over.yaml", tmp_path / "under.yaml"
    over.write_bytes(padded(EXPERIMENT, 64 * 1024 + 1))
    under.write_bytes(padded(EXPERIMENT, 64 * 1024))
    report = tmp_path / "report.json"
    report.write_text(REPORT)
    for path in (huge, over):
        cases.refused(["validate", str(path)], str(path), "64 KiB", "DRIFTLAB_MAX_CONFIG_BYTES")
        cases.refused(["run", str(path)], str(path), "DRIFTLAB_MAX_CONFIG_BYTES")
        cases.refused(["gate", str(report), "--config", str(path)], str(path), "DRIFTLAB_MAX_CONFIG_BYTES")
    assert "valid" in cases.accepted(["validate", str(under)])
    # The setting raises the limit up to 96 KiB, what one pipeline-task argument carries; not beyond.
    cases.refused(["validate", str(over)], "DRIFTLAB_MAX_CONFIG_BYTES", "96 KiB",
                  env={"DRIFTLAB_MAX_CONFIG_BYTES": "97KiB"})
    cases.refused(["validate", str(under)], "DRIFTLAB_MAX_CONFIG_BYTES", "not a size",
                  env={"DRIFTLAB_MAX_CONFIG_BYTES": "lots"})
    # `gate --config` reads the experiment file the same way, without building a model: a quick control.
    assert "gate: PASS" in cases.accepted(["gate", str(report), "--config", str(over)],
                                          env={"DRIFTLAB_MAX_CONFIG_BYTES": "96KiB"})
    cases.figure(request, "experiment file over its size limit (50 MB YAML; limit + 1 byte; setting above its "
                 "ceiling)", note="; the 50 MB file took 234 s and 5 GB before")


def test_csv_files_over_the_limit_are_refused(tmp_path, request):
    cases = Cases(tmp_path)
    limit = {"DRIFTLAB_MAX_DATA_BYTES": "1MiB"}
    over_csv, under_csv = tmp_path / "over.csv", tmp_path / "under.csv"
    over_csv.write_bytes(csv_of_size(2**20 + 1))
    under_csv.write_bytes(csv_of_size(2**20))
    config = experiment(tmp_path, "over-csv.yaml", f"{{name: csv, path: {over_csv}, target: label}}")
    cases.refused(["validate", str(config)], str(over_csv), "1 MiB", "DRIFTLAB_MAX_DATA_BYTES", env=limit)
    cases.refused(["run", str(config)], str(over_csv), "DRIFTLAB_MAX_DATA_BYTES", env=limit)
    control = experiment(tmp_path, "under-csv.yaml", f"{{name: csv, path: {under_csv}, target: label}}")
    assert "valid" in cases.accepted(["validate", str(control)], env=limit)
    cases.figure(request, "csv data file over its size limit")


def test_npz_files_and_zip_bombs_over_the_limit_are_refused(tmp_path, request):
    cases = Cases(tmp_path)
    limit = {"DRIFTLAB_MAX_DATA_BYTES": "1MiB"}
    # npz: the file, and the arrays once uncompressed (a zip bomb: 21 KB that inflate to 20 MiB).
    rng = np.random.default_rng(0)
    big = tmp_path / "big.npz"
    np.savez(big, x=rng.normal(size=(30_000, 10)).astype(np.float32), y=np.arange(30_000) % 2)
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, x=np.zeros((524_288, 10), np.float32), y=np.zeros(524_288, np.int8) + 1)
    small = tmp_path / "small.npz"
    np.savez_compressed(small, x=np.zeros((20_000, 10), np.float32) + 1, y=np.arange(20_000) % 2)
    with zipfile.ZipFile(small) as z:  # the control inflates to just under the limit
        assert 900_000 < sum(i.file_size for i in z.infolist()) < 2**20 > os.path.getsize(small)
    assert os.path.getsize(big) > 2**20 and os.path.getsize(bomb) < 100_000
    for path, needle in ((big, "1 MiB limit"), (bomb, "once uncompressed")):
        config = experiment(tmp_path, f"{path.stem}.yaml", f"{{name: npz, path: {path}}}")
        cases.refused(["validate", str(config)], str(path), needle, "DRIFTLAB_MAX_DATA_BYTES", env=limit)
    control = experiment(tmp_path, "small.yaml", f"{{name: npz, path: {small}}}")
    assert "valid" in cases.accepted(["validate", str(control)], env=limit)
    cases.figure(request, "npz data file over its size limit, or inflating past it (zip bomb)")


def test_reports_over_the_limit_are_refused(tmp_path, request):
    cases = Cases(tmp_path)
    # report.json: `driftlab gate` and `report show`.
    over_report, under_report = tmp_path / "over.json", tmp_path / "under.json"
    text = json.dumps(synthetic_report())
    over_report.write_text(text + " " * (2**20 + 1 - len(text)))
    under_report.write_text(text + " " * (2**20 - len(text)))
    report_limit = {"DRIFTLAB_MAX_REPORT_BYTES": "1MiB"}
    for command in (["gate"], ["report", "show"]):
        cases.refused([*command, str(over_report)], str(over_report), "DRIFTLAB_MAX_REPORT_BYTES", env=report_limit)
        cases.accepted([*command, str(under_report)], env=report_limit, codes=(0, 3, 4))  # a gate status
    cases.figure(request, "report.json over its size limit (`gate`, `report show`)")


# -- defect 4: bad data files -----------------------------------------------------------------------------
def _npy(shape: tuple, dtype: str, payload: bytes = b"") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": shape})
    return out.getvalue() + payload


def bad_data_files(folder: Path) -> list[tuple[str, Path, tuple[str, ...]]]:
    """(dataset kind, file, what the message must say) for each bad data file."""
    rows = np.arange(30) % 2
    files = []

    def csv(name: str, content: bytes, *needles: str) -> None:
        (folder / name).write_bytes(content)
        files.append(("csv", folder / name, needles))

    def npz(name: str, *needles: str, **arrays) -> None:
        np.savez(folder / name, **arrays)
        files.append(("npz", folder / name, needles))

    csv("latin1.csv", "city,label\n".encode() + "Zürich,1\n".encode("latin-1") * 30,
        "not UTF-8", "line 2", "column 'city'", "save it as UTF-8")
    csv("long-field.csv", b"a,label\n1,0\n\"" + b"9" * 140_000 + b"\",1\n" + b"2,1\n" * 30,
        "line 3", "column 'a'", "128 KiB", "quote")
    csv("nul.csv", b"a,label\n" + b"1,0\n" * 20 + b"2,1\x00\n" + b"3,1\n" * 10, "line 22", "NUL", "label")
    csv("utf16.csv", "a,label\n1,0\n".encode("utf-16"), "not UTF-8", "line 1", "save it as UTF-8")
    npz("x-strings.npz", "array 'x'", "np.asarray(x, dtype='float32')", x=np.array([["a", "b"]] * 30), y=rows)
    npz("x-objects.npz", "array 'x'", "Python objects", x=np.array([[1, "b"]] * 30, dtype=object), y=rows)
    npz("y-objects.npz", "array 'y'", "Python objects", x=np.zeros((30, 2)),
        y=np.array([{"a": 1}] * 30, dtype=object))
    npz("empty.npz", "arrays named 'x' and 'y'")
    np.save(folder / "single.npy", np.zeros((30, 2)))
    (folder / "single.npy").rename(folder / "single.npz")
    files.append(("npz", folder / "single.npz", ("single array",)))
    with zipfile.ZipFile(folder / "raw-member.npz", "w") as z:
        z.writestr("x", b"not an array")
        z.writestr("y.npy", _npy((30,), "i8", bytes(240)))
    files.append(("npz", folder / "raw-member.npz", ("array 'x'", "not a NumPy array")))
    with zipfile.ZipFile(folder / "lying-header.npz", "w") as z:
        z.writestr("x.npy", _npy((10**9, 10), "f8", bytes(100)))  # says 80 GB, holds 100 bytes
        z.writestr("y.npy", _npy((30,), "i8", bytes(240)))
    files.append(("npz", folder / "lying-header.npz", ("array 'x'", "damaged")))
    return files


@pytest.mark.slow
def test_bad_data_files_are_refused_by_validate_and_run(tmp_path, request):
    cases = Cases(tmp_path)
    for kind, path, needles in bad_data_files(tmp_path):
        dataset = f"{{name: csv, path: {path}, target: label}}" if kind == "csv" else f"{{name: npz, path: {path}}}"
        config = experiment(tmp_path, f"{path.name}.yaml", dataset)
        for command in ("validate", "run"):
            cases.refused([command, str(config)], "dataset", str(path), *needles)
    # Text labels in y are classes (the control); they cannot be a regression target.
    labels = tmp_path / "y-strings.npz"
    np.savez(labels, x=np.random.default_rng(0).normal(size=(40, 3)), y=np.array(["cat", "dog"] * 20))
    regression = experiment(tmp_path, "y-regression.yaml", f"{{name: npz, path: {labels}, task: regression}}")
    cases.refused(["validate", str(regression)], "dataset.task", "text labels")
    classes = experiment(tmp_path, "y-classes.yaml", f"{{name: npz, path: {labels}}}")
    assert "valid" in cases.accepted(["validate", str(classes)])
    # Controls: a UTF-8 BOM is dropped (the first column is still 'label'); a 128 KiB field is read.
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbflabel,a\n" + b"0,1\n1,2\n" * 20)
    assert "valid" in cases.accepted(["validate", str(experiment(tmp_path, "bom.yaml",
                                                                 f"{{name: csv, path: {bom}, target: label}}"))])
    field = tmp_path / "field.csv"
    field.write_bytes(b"a,label\n\"0." + b"0" * (128 * 1024 - 3) + b"1\",1\n" + b"2,0\n3,1\n" * 20)
    assert "valid" in cases.accepted(["validate", str(experiment(tmp_path, "field.yaml",
                                                                 f"{{name: csv, path: {field}, target: label}}"))])
    cases.figure(request, "bad data file content (Latin-1 or UTF-16 csv, 128 KiB+ csv field, NUL, npz of strings or "
                 "objects, empty, single-array, damaged)")


# -- defect 6: strict parsing --------------------------------------------------------------------------------
LAX = [
    ("model:\n  epochs: 6\n  batch_size: 8\n  epochs: 600\n", "model.epochs", "lines 5 and 7"),
    ("profiles: {pools: [{name: b}]}\n", "profiles", "lines 3 and 4"),  # the section itself twice
    ("model:\n  epochs: true\n", "model.epochs", "line 5"),
    ("model:\n  epochs: '6'\n", "model.epochs", "line 5"),
    ("model:\n  epochs: 6.0\n", "model.epochs", "line 5"),
    ("seeds:\n  repeats: false\n", "seeds.repeats", "line 5"),
    ("tuning:\n  trials: 2\nsearch_space:\n  u: {type: int, low: 1, high: true}\n", "search_space.u.high", "line 7"),
]


def test_duplicate_keys_and_lax_types_are_refused_with_their_line(tmp_path, request):
    cases = Cases(tmp_path)
    for i, (extra, field, line) in enumerate(LAX):
        path = tmp_path / f"lax-{i}.yaml"
        path.write_text(EXPERIMENT + extra)
        err = cases.refused(["validate", str(path)], field, line)
        assert f"  - {field}: " in err
    onednn = tmp_path / "onednn.yaml"
    onednn.write_text('name: limits\ndataset: {name: digits}\nprofiles:\n  pools:\n    - name: cpu-default\n'
                      '      onednn: "yes"\n')
    cases.refused(["validate", str(onednn)], "profiles.pools[0].onednn", "true or false", "line 6")
    cases.refused(["run", str(onednn)], "profiles.pools[0].onednn", "line 6")
    # Controls: each value spelled as its type; a whole number where a float is expected.
    control = tmp_path / "control.yaml"
    control.write_text('name: limits\ndataset: {name: digits, eval_fraction: 0.2}\nmodel: {epochs: 6}\n'
                       'profiles:\n  pools:\n    - name: cpu-default\n      onednn: true\n'
                       'tolerances: {max_metric_delta: 1}\n')
    assert "valid" in cases.accepted(["validate", str(control)])
    cases.figure(request, "lax experiment file (a key given twice, true as a number, text as a boolean or number)")
