"""Files a person names (experiment file, csv/npz data, report.json): regular files within a size limit.

``os.stat`` comes before ``open``: a device (``/dev/zero``), FIFO, socket or directory is
refused without being opened, so nothing blocks or fills memory. Reads stop one byte past
the limit, since ``/proc`` files report size 0. Each limit is a ``Setting`` (bytes, or a
number with KiB/MiB/GiB); a refusal names the file, the limit and the setting that raises it.
"""

from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

from driftlab.errors import BadInput
from driftlab.settings import MAX_CONFIG_BYTES, Setting

UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "kb": 2**10, "m": 2**20, "mib": 2**20, "mb": 2**20,
         "g": 2**30, "gib": 2**30, "gb": 2**30}
#: An experiment file travels JSON-escaped inside one pipeline-task argument, which Linux caps at
#: 128 KiB (MAX_ARG_STRLEN); 96 KiB leaves room for the rest of the task's input.
CONFIG_CEILING = 96 * 2**10
CEILINGS = {MAX_CONFIG_BYTES.name: (CONFIG_CEILING, "an experiment file travels in one pipeline-task argument, "
                                                    "which Linux limits to 128 KiB")}
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


class FileRefused(BadInput):
    """A named file driftlab will not read; ``reason`` says why and what to do (without the path)."""

    def __init__(self, what: str, path: str | Path, reason: str, *, missing: bool = False):
        self.what, self.path, self.reason, self.missing = what, str(path), reason, missing
        super().__init__(f"{what} '{path}': {reason}")


def human(n: int) -> str:
    """``65536`` → ``64 KiB``; whole units only where exact."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n:,} bytes"


def byte_limit(setting: Setting) -> int:
    """The setting's value in bytes; a malformed value, or one above the setting's ceiling, is BadInput."""
    raw = setting.get() or ""
    match = re.fullmatch(r"(\d+)\s*([a-z]*)", raw.strip().lower())
    if not match or match.group(2) not in UNITS or int(match.group(1)) < 1:
        raise BadInput(f"{setting.name}: {raw!r} is not a size; give bytes, or a number with KiB, MiB or GiB "
                       f"(default {setting.default})")
    value = int(match.group(1)) * UNITS[match.group(2)]
    ceiling, why = CEILINGS.get(setting.name, (None, ""))
    if ceiling is not None and value > ceiling:
        raise BadInput(f"{setting.name}: {raw} is above {human(ceiling)}, the most it can be ({why}); "
                       f"set it to at most {human(ceiling).replace(' ', '')}")
    return value


def _too_large(setting: Setting, limit: int, size: str) -> str:
    ceiling = CEILINGS.get(setting.name, (None, ""))[0]
    most = f" (at most {human(ceiling).replace(' ', '')})" if ceiling else ""
    return (f"{size}, more than the {human(limit)} limit ({setting.name}={setting.get()}); make it smaller, "
            f"or raise {setting.name}{most}")


def check_regular_file(path: str | Path, setting: Setting, what: str) -> int:
    """Refuse a missing, unreadable, non-regular or too large file; return the limit in bytes."""
    limit = byte_limit(setting)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileRefused(what, path, "file not found", missing=True) from None
    except (OSError, ValueError) as exc:
        raise FileRefused(what, path, f"cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise FileRefused(what, path, f"is {kind}, not a regular file; give the path of a file")
    if st.st_size > limit:
        raise FileRefused(what, path, _too_large(setting, limit, f"it is {st.st_size:,} bytes"))
    return limit


class _Limited(io.RawIOBase):
    """A file that refuses to be read past ``limit`` bytes (by position: seeks are allowed)."""

    def __init__(self, raw: io.FileIO, limit: int, refuse):
        super().__init__()
        self._raw, self._limit, self._refuse = raw, limit, refuse

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer) -> int | None:
        room = max(1, self._limit + 1 - self._raw.tell())  # never more than one byte past the limit
        n = self._raw.readinto(memoryview(buffer)[:room])
        if n and self._raw.tell() > self._limit:
            raise self._refuse()
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_bounded(path: str | Path, setting: Setting, what: str) -> BinaryIO:
    """A checked regular file opened for binary reading; reading past the limit raises FileRefused."""
    limit = check_regular_file(path, setting, what)
    try:
        raw = io.FileIO(path, "r")
    except OSError as exc:
        raise FileRefused(what, path, f"cannot read it ({exc.strerror or exc})") from None

    def refuse() -> FileRefused:
        return FileRefused(what, path, _too_large(setting, limit, f"it holds more than {limit:,} bytes"))

    return io.BufferedReader(_Limited(raw, limit, refuse))


def read_bounded(path: str | Path, setting: Setting, what: str) -> bytes:
    """The bytes of a checked regular file; refused once a byte past the limit is read."""
    with open_bounded(path, setting, what) as fh:
        try:
            return fh.read()
        except OSError as exc:
            raise FileRefused(what, path, f"cannot read it ({exc.strerror or exc})") from None


def decode_utf8(data: bytes, what: str, path: str | Path) -> str:
    """UTF-8 text (a leading BOM dropped); other bytes are refused with the line and column of the first."""
    data = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise FileRefused(what, path, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}, column "
                                      f"{column}); save it as UTF-8") from None


def read_text_bounded(path: str | Path, setting: Setting, what: str) -> str:
    """``read_bounded`` then ``decode_utf8``."""
    return decode_utf8(read_bounded(path, setting, what), what, path)
