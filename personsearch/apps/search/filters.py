"""Search filters: which detections of an index a query may return.

A :class:`SearchFilter` holds the conditions a user gives (all must hold): camera(s), source(s)
(image folder, dataset, video), a time range, a path prefix, a minimum detection score and a
maximum uncertainty. :class:`CompiledFilter` binds one to an index:

* conditions on images/frames give a mask over the items: camera, source and time with numpy
  on the item columns a search holds in memory
  (:class:`~personsearch.apps.search.index.Columns`, read from SQLite when the search opens), a
  path prefix through SQLite's index on ``items.path`` (a range query); the detections of an item
  are consecutive rows, so matching items give row ranges;
* conditions on detections (score, uncertainty) are evaluated with numpy on the row columns.

Measured on a simulated index of 1M detections (140k images): an SQL ``sum(num_rows)`` over a
10 % time range took 45-120 ms on the busy 2-core machine, the numpy mask over the items ~2 ms.

The searcher uses :meth:`CompiledFilter.rows` (every matching row) for small result sets and
:meth:`CompiledFilter.passes` (which of some candidate rows match) to post-filter approximate
candidates on large ones; both apply the same conditions.

A condition on a field the index does not have (no uncertainty from its model, no timestamps
among still images, no camera names) is an error naming the field (:class:`MissingFieldError`).
"""

import math
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from .errors import MissingFieldError
from .index import Columns, SearchIndex, ranges_to_rows

__all__ = ["CompiledFilter", "SearchFilter", "parse_time"]

# the index field each condition reads, and how a user names it
_FIELD_OF = {"cameras": "camera", "time_from": "time", "time_to": "time",
             "max_uncertainty": "uncertainty"}  # fmt: skip
_WHY_MISSING = {
    "camera": "no image or frame of it has a camera name (index with --camera NAME, or a dataset "
    "whose records carry camera_id)",
    "time": "it holds no timestamps (only video frames have one: --video, with --start-time for "
    "wall-clock time)",
    "uncertainty": "its model outputs no per-detection uncertainty (a UGAS model with "
    "MODEL.UGAS.UG.OUTPUT_VARIANCE True)",
}


def parse_time(value: str, what: str) -> float:
    """Seconds from a number of seconds or an ISO 8601 date/time (UTC unless it says otherwise).

    Raises:
        ValueError: naming ``what`` (the flag) and the value.
    """
    import datetime

    try:
        return float(value)
    except ValueError:
        pass
    try:
        t = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{what}: {value!r} is neither seconds nor an ISO 8601 date/time "
            "(e.g. 2024-05-01T08:30:00)"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t.timestamp()


@dataclass
class SearchFilter:
    """Conditions on the detections a search may return (all of them must hold; None or empty =
    no condition).

    Attributes:
        cameras: camera names (``items.camera``), any of them.
        sources: sources, any of them, each named by its label, its folder / video path, the
            path's last component, or its id.
        time_from, time_to: time range in seconds, inclusive (video frames: start time + frame
            time; still images have none and never match).
        path_prefix: the image's path relative to its source's root (or the video file name)
            starts with this.
        min_score: detection score >= this.
        max_uncertainty: the model's per-detection uncertainty <= this.
    """

    cameras: Sequence[str] = ()
    sources: Sequence[str] = ()
    time_from: Optional[float] = None
    time_to: Optional[float] = None
    path_prefix: Optional[str] = None
    min_score: Optional[float] = None
    max_uncertainty: Optional[float] = None

    def __post_init__(self):
        for name in ("time_from", "time_to", "min_score", "max_uncertainty"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or math.isnan(v)):
                raise ValueError(f"filter {name}: expected a number, got {v!r}")
        if self.time_from is not None and self.time_to is not None:
            if self.time_from > self.time_to:
                raise ValueError(
                    f"filter time range: from {self.time_from} is after to {self.time_to}"
                )
        if self.path_prefix is not None and not self.path_prefix:
            raise ValueError("filter path_prefix: empty (leave it out to match every path)")
        self.cameras = tuple(self.cameras or ())
        self.sources = tuple(self.sources or ())

    @property
    def is_empty(self) -> bool:
        """No condition at all."""
        return not (self.has_item_terms or self.has_det_terms)

    @property
    def has_item_terms(self) -> bool:
        """A condition on images/frames."""
        return bool(self.cameras or self.sources or self.path_prefix is not None
                    or self.time_from is not None or self.time_to is not None)  # fmt: skip

    @property
    def has_det_terms(self) -> bool:
        """A condition on detections."""
        return self.min_score is not None or self.max_uncertainty is not None

    def fields(self) -> List[str]:
        """Optional index fields the conditions read."""
        out = []
        for attr, field in _FIELD_OF.items():
            v = getattr(self, attr)
            if v is not None and v != () and field not in out:
                out.append(field)
        return out

    def describe(self) -> str:
        """The conditions, for logs and reports (``"all"`` if none)."""
        parts = []
        if self.cameras:
            parts.append(f"camera in {list(self.cameras)}")
        if self.sources:
            parts.append(f"source in {list(self.sources)}")
        if self.time_from is not None or self.time_to is not None:
            lo = "-inf" if self.time_from is None else f"{self.time_from:g}"
            hi = "inf" if self.time_to is None else f"{self.time_to:g}"
            parts.append(f"time in [{lo}, {hi}] s")
        if self.path_prefix is not None:
            parts.append(f"path starts with {self.path_prefix!r}")
        if self.min_score is not None:
            parts.append(f"score >= {self.min_score:g}")
        if self.max_uncertainty is not None:
            parts.append(f"uncertainty <= {self.max_uncertainty:g}")
        return ", ".join(parts) or "all"


def _successor(prefix: str) -> Optional[str]:
    """The smallest string above every string that starts with ``prefix`` (None if none)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            return prefix[:-1] + chr(last + 1)
        prefix = prefix[:-1]
    return None


class CompiledFilter:
    """A :class:`SearchFilter` bound to an index and its in-memory columns.

    Raises:
        MissingFieldError: a condition on a field the index lacks (the message names it).
        ValueError: a source name that matches no source of the index.
    """

    def __init__(self, filt: SearchFilter, index: SearchIndex, columns: Columns):
        self.filter = filt
        self.index = index
        self.columns = columns
        have = set(index.fields())
        for field in filt.fields():
            if field not in have:
                raise MissingFieldError(
                    f"Cannot filter on '{field}': search index {index.path!r} has no '{field}' "
                    f"field; {_WHY_MISSING[field]}"
                )
        self.item_mask = self._item_mask(filt, index)
        self._det_fraction: Optional[float] = None

    @staticmethod
    def _source_ids(names: Sequence[str], index: SearchIndex) -> List[int]:
        sources = index.sources
        ids = []
        for name in names:
            norm = os.path.abspath(name) if os.sep in name or name.startswith(".") else None
            found = [
                s["id"]
                for s in sources
                if name in (s.get("label"), str(s["id"]))
                or (norm is not None and norm == os.path.abspath(s.get("root") or s.get("path")))
                or name == os.path.basename((s.get("root") or s.get("path") or "").rstrip("/"))
            ]
            if not found:
                known = "; ".join(index.sources_summary()) or "none"
                raise ValueError(
                    f"--source {name!r} matches no source of search index {index.path!r} "
                    f"(its sources: {known}); name one by label, path, or folder/file name"
                )
            ids.extend(found)
        return sorted(set(ids))

    def _item_mask(self, filt: SearchFilter, index: SearchIndex) -> Optional[np.ndarray]:
        """(M,) bool over the items of the columns, or None without item conditions."""
        if not filt.has_item_terms:
            return None
        c = self.columns
        mask = np.ones(len(c.item_id), bool)
        if filt.cameras:
            codes = [i for i, n in enumerate(c.camera_names) if n in set(filt.cameras)]
            mask &= np.isin(c.item_camera, codes)
        if filt.sources:
            mask &= np.isin(c.item_source, self._source_ids(filt.sources, index))
        if filt.time_from is not None:
            mask &= c.item_time >= filt.time_from  # NaN (no time) never matches
        if filt.time_to is not None:
            mask &= c.item_time <= filt.time_to
        if filt.path_prefix is not None:
            succ = _successor(filt.path_prefix)
            if succ is None:
                sql, params = "substr(path, 1, ?) = ?", [len(filt.path_prefix), filt.path_prefix]
            else:
                sql, params = "path >= ? AND path < ?", [filt.path_prefix, succ]
            ids = np.array(
                [r[0] for r in index._all(f"SELECT id FROM items WHERE {sql}", params)], np.int64
            )
            ids = ids[np.isin(ids, c.item_id)]  # items committed after the columns were read
            prefix = np.zeros(len(c.item_id), bool)
            prefix[c.item_positions(ids)] = True
            mask &= prefix
        return mask

    # -- detections -----------------------------------------------------------------------------
    def det_mask(self, rows: Optional[np.ndarray] = None) -> np.ndarray:
        """Whether the detection conditions (and liveness) hold, for ``rows`` or every row."""
        c = self.columns
        sel = (lambda a: a) if rows is None else (lambda a: a[rows])
        mask = sel(c.live).copy()
        if self.filter.min_score is not None:
            mask &= sel(c.score) >= self.filter.min_score
        if self.filter.max_uncertainty is not None:
            mask &= sel(c.uncertainty) <= self.filter.max_uncertainty  # NaN never matches
        return mask

    def det_fraction(self) -> float:
        """Fraction of the live rows that meet the detection conditions."""
        if self._det_fraction is None:
            live = max(1, self.columns.num_live)
            self._det_fraction = (
                float(self.det_mask().sum()) / live if self.filter.has_det_terms else 1.0
            )
        return self._det_fraction

    # -- rows -----------------------------------------------------------------------------------
    def item_rows_count(self) -> int:
        """Rows of the items that meet the item conditions (live rows if there are none)."""
        if self.item_mask is None:
            return self.columns.num_live
        return int(self.columns.item_count[self.item_mask].sum())

    def estimate(self) -> int:
        """About how many rows match (exact unless there are conditions of both kinds: then
        they are assumed independent)."""
        if self.item_mask is None:
            if self.filter.has_det_terms:
                return int(self.det_mask().sum())
            return self.columns.num_live
        return int(round(self.item_rows_count() * self.det_fraction()))

    def rows(self) -> np.ndarray:
        """Every matching row, sorted."""
        if self.item_mask is None:
            return np.flatnonzero(self.det_mask())
        c = self.columns
        sel = self.item_mask & (c.item_count > 0)
        rows = ranges_to_rows(np.stack([c.item_first[sel], c.item_count[sel]], 1))
        return rows[self.det_mask(rows)]

    def passes(self, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` match (bool mask of the same shape)."""
        rows = np.asarray(rows, dtype=np.int64)
        mask = self.det_mask(rows)
        if self.item_mask is None or not mask.any():
            return mask
        pos = self.columns.item_positions(self.columns.item[rows[mask]])
        mask[mask] = self.item_mask[pos]
        return mask
