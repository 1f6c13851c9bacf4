"""utils.file_io: the one atomic write of the package."""

import os

import pytest

from personsearch.utils.file_io import atomic_path, atomic_write, temporary_path


def test_atomic_write_replaces_the_file_in_one_step(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with atomic_write(str(path), "w", encoding="utf-8") as f:
        f.write("new")
        assert path.read_text() == "old"  # nothing visible before the block ends
        assert os.path.isfile(temporary_path(str(path)))
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.json"]
    with atomic_write(str(path), "wb") as f:
        f.write(b"bytes")
    assert path.read_bytes() == b"bytes"


@pytest.mark.parametrize("unique", [False, True])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, unique):
    path = tmp_path / "results.pth"
    path.write_bytes(b"complete")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(str(path), "wb", unique=unique) as f:
            f.write(b"partial")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"complete"
    assert os.listdir(tmp_path) == ["results.pth"]


def test_unique_temporary_files_and_writers_that_take_a_name(tmp_path):
    path = str(tmp_path / "index.faiss")
    with atomic_path(path, unique=True) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and tmp != temporary_path(path)
        with open(tmp, "wb") as f:  # e.g. faiss.write_index(index, tmp)
            f.write(b"x")
    with open(path, "rb") as f:
        assert f.read() == b"x"
    assert os.listdir(tmp_path) == ["index.faiss"]
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(path, "a"):
            pass
