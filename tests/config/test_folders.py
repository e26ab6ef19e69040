"""Folders driftlab would write are checked without being created: files, kernel filesystems, read-only mounts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from driftlab.config.folders import FolderError, Mount, check_writable_folder, mount_of, mounts, nearest_existing
from support.faults import small_filesystem


def test_a_folder_that_does_not_exist_yet_under_a_writable_one_is_accepted_and_not_created(tmp_path):
    target = tmp_path / "a" / "b" / "home"
    check_writable_folder(target, "storage.local_dir")
    assert not (tmp_path / "a").exists(), "checking creates nothing"
    assert nearest_existing(target) == tmp_path
    check_writable_folder(tmp_path, "--home")  # an existing writable folder


@pytest.mark.parametrize("make, within, message", [
    (lambda p: p.write_text("x"), "", "exists and is not a folder"),
    (lambda p: p.write_text("x"), "home/sub", "which is not a folder"),
], ids=["the path is a file", "a parent is a file"])
def test_a_path_through_a_regular_file_is_refused(tmp_path, make, within, message):
    make(tmp_path / "exp.yaml")
    target = tmp_path / "exp.yaml" / within if within else tmp_path / "exp.yaml"
    with pytest.raises(FolderError, match=rf"^storage.local_dir: '{target}' .*{message}"):
        check_writable_folder(target, "storage.local_dir")


@pytest.mark.parametrize("path, fstype", [("/proc/driftlab", "proc"), ("/proc/self/fd/home", "proc"),
                                          ("/sys/driftlab", "sysfs"), ("/dev/driftlab", "devtmpfs")])
def test_kernel_filesystems_are_refused(path, fstype):
    if mount_of(Path(os.path.realpath(nearest_existing(Path(path))))).fstype != fstype:
        pytest.skip(f"{path} is not on {fstype} here")
    with pytest.raises(FolderError, match=rf"^--home: '{path}' is on the kernel's {fstype} filesystem"):
        check_writable_folder(Path(path), "--home")


def test_a_read_only_mount_is_refused_and_a_writable_one_accepted(tmp_path):
    with small_filesystem(tmp_path / "ro", read_only=True) as ro:
        with pytest.raises(FolderError, match="cannot be created: .* is not writable"):
            check_writable_folder(ro / "home", "storage.local_dir")
    with small_filesystem(tmp_path / "rw") as rw:
        check_writable_folder(rw / "home", "storage.local_dir")
        assert not (rw / "home").exists()


def test_mountinfo_is_read_with_escapes_and_the_longest_mount_wins(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("22 27 0:21 / /proc rw,relatime - proc proc rw\n"
                    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
                    "30 27 0:27 / /mnt/my\\040disk rw shared:1 - tmpfs tmpfs rw\n")
    table = mounts(info)
    assert table == [Mount("/proc", "proc"), Mount("/", "ext4"), Mount("/mnt/my disk", "tmpfs")]
    assert mount_of(Path("/mnt/my disk/x"), table).fstype == "tmpfs"
    assert mount_of(Path("/mnt/my diskette"), table).fstype == "ext4", "a prefix of a name is not a parent"
    assert mount_of(Path("/proc"), table).fstype == "proc"
