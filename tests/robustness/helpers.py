"""Helpers of the bad-input tests."""

import re
from typing import Iterable

from tests.common import warning_messages


def damage_file(path: str, keep_fraction: float = 0.5, replace_with: bytes = None) -> None:
    """Truncate ``path`` to a fraction of its bytes, or overwrite it with ``replace_with``."""
    with open(path, "rb") as f:
        data = f.read()
    if replace_with is None:
        replace_with = data[: int(len(data) * keep_fraction)]
    with open(path, "wb") as f:
        f.write(replace_with)


def warnings_of(caplog) -> str:
    """All WARNING+ messages captured by ``caplog``, one per line."""
    return "\n".join(warning_messages(caplog))


def error_line(stderr: str) -> str:
    """The ``error: ...`` line that tools/evaluate_search.py prints (stderr may hold other
    output, e.g. logging set up by an earlier test)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def assert_names(message: str, parts: Iterable[str]) -> None:
    """Every part (plain text, not a regex) occurs in the message."""
    missing = [p for p in parts if p not in message]
    assert not missing, f"{missing} not in the message: {message}"


def escaped(text: str) -> str:
    return re.escape(text)
