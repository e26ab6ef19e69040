"""driftlab.inputs: regular files only, read up to a limit a setting names (issue 14, defect 3)."""

from __future__ import annotations

import os

import pytest

from driftlab import inputs, settings
from driftlab.errors import BadInput


@pytest.mark.parametrize("raw, size", [("64KiB", 65536), ("1 MiB", 2**20), ("2GiB", 2**31), ("1000", 1000),
                                       ("3k", 3072), ("5MB", 5 * 2**20)])
def test_sizes_are_bytes_or_binary_units(monkeypatch, raw, size):
    monkeypatch.setenv(settings.MAX_DATA_BYTES.name, raw)
    assert inputs.byte_limit(settings.MAX_DATA_BYTES) == size


def test_defaults(monkeypatch):
    for s in (settings.MAX_CONFIG_BYTES, settings.MAX_DATA_BYTES, settings.MAX_REPORT_BYTES):
        monkeypatch.delenv(s.name, raising=False)
    assert inputs.byte_limit(settings.MAX_CONFIG_BYTES) == 64 * 1024
    assert inputs.byte_limit(settings.MAX_DATA_BYTES) == 2 * 2**30
    assert inputs.byte_limit(settings.MAX_REPORT_BYTES) == 256 * 2**20


@pytest.mark.parametrize("raw", ["lots", "0", "-1", "1.5MiB", "1TB", "KiB"])
def test_a_malformed_size_names_the_setting(monkeypatch, raw):
    monkeypatch.setenv(settings.MAX_DATA_BYTES.name, raw)
    with pytest.raises(BadInput, match=f"{settings.MAX_DATA_BYTES.name}: .* is not a size"):
        inputs.byte_limit(settings.MAX_DATA_BYTES)


def test_the_config_limit_has_a_ceiling(monkeypatch):
    monkeypatch.setenv(settings.MAX_CONFIG_BYTES.name, "98305")
    with pytest.raises(BadInput, match="above 96 KiB.*128 KiB"):
        inputs.byte_limit(settings.MAX_CONFIG_BYTES)
    monkeypatch.setenv(settings.MAX_CONFIG_BYTES.name, "98304")  # control: the ceiling itself
    assert inputs.byte_limit(settings.MAX_CONFIG_BYTES) == inputs.CONFIG_CEILING


def test_a_file_of_exactly_the_limit_is_read_one_more_byte_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.MAX_REPORT_BYTES.name, "100")
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert inputs.read_bounded(path, settings.MAX_REPORT_BYTES, "report") == b"x" * 100
    path.write_bytes(b"x" * 101)
    with pytest.raises(inputs.FileRefused, match=r"report '.*f': it is 101 bytes, more than the 100 bytes limit "
                                                 r"\(DRIFTLAB_MAX_REPORT_BYTES=100\).*raise DRIFTLAB_MAX_REPORT_BYTES"):
        inputs.read_bounded(path, settings.MAX_REPORT_BYTES, "report")


def test_a_proc_file_reporting_size_0_stops_one_byte_past_the_limit(monkeypatch):
    # /proc/self/status is a few KiB whatever the process has loaded (smaps grows with every library)
    assert os.stat("/proc/self/status").st_size == 0
    monkeypatch.setenv(settings.MAX_REPORT_BYTES.name, "100")
    with pytest.raises(inputs.FileRefused, match="holds more than 100 bytes"):
        inputs.read_bounded("/proc/self/status", settings.MAX_REPORT_BYTES, "report")
    monkeypatch.setenv(settings.MAX_REPORT_BYTES.name, "1MiB")  # control: within the limit it is read whole
    assert b"VmRSS" in inputs.read_bounded("/proc/self/status", settings.MAX_REPORT_BYTES, "report")


def test_reads_past_the_limit_never_take_more_than_one_byte(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"y" * 10_000)
    refusals = []
    with open(path, "rb", buffering=0) as raw:
        limited = inputs._Limited(raw, 10, lambda: refusals.append(raw.tell()) or inputs.FileRefused("f", path, "x"))
        assert limited.read(8) == b"y" * 8
        with pytest.raises(inputs.FileRefused):
            limited.read(5000)
    assert refusals == [11]


def test_not_regular_files_are_refused_without_opening(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would block until a writer comes
    for path, kind in (("/dev/zero", "a character device"), (fifo, "a FIFO"), (tmp_path, "a directory")):
        with pytest.raises(inputs.FileRefused, match=f"is {kind}.*not a regular file"):
            inputs.read_bounded(path, settings.MAX_CONFIG_BYTES, "experiment file")
    with pytest.raises(inputs.FileRefused, match="file not found") as info:
        inputs.read_bounded(tmp_path / "nope", settings.MAX_CONFIG_BYTES, "experiment file")
    assert info.value.missing


def test_utf8_with_or_without_bom_others_refused_with_line_and_column():
    assert inputs.decode_utf8(b"\xef\xbb\xbfname: x\n", "f", "p") == "name: x\n"
    assert inputs.decode_utf8("name: é\n".encode(), "f", "p") == "name: é\n"
    with pytest.raises(inputs.FileRefused, match=r"not UTF-8 text \(byte 0xe9 at line 2, column 10\); save it as"):
        inputs.decode_utf8(b"\xef\xbb\xbfa: 1\nname: caf\xe9\n", "f", "p")
