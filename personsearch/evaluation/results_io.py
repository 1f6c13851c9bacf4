"""The raw person-search results file: what the model produced on a test split, saved once so that
any search protocol can be re-scored offline (``tools/evaluate_search.py``) without the model.

Format (``format_version`` 1): a ``torch.save``'d dict holding only tensors, lists, dicts, str, int
and float, so it is read weights-only (:func:`personsearch.utils.serialization.load_torch_file`):

.. code-block:: python

    {
        "format_version": 1,
        "dataset": "cuhk_sysu_test",          # registered dataset name it was produced on
        "config": "<yaml dump>" or "",        # the config used, for the record
        "gallery": {                          # every image of the split, detections or not
            image_id: {
                "boxes": FloatTensor (N, 4),  # XYXY, original image pixels
                "scores": FloatTensor (N,),   # the method's detection score
                "feats": FloatTensor (N, D),  # L2-normalised, NOT multiplied by the score
            },
        },
        "queries": [                          # one per query box of the split, any order
            {"query_index": int, "image_id": str, "bbox": [x1, y1, x2, y2],
             "person_id": int, "feat": FloatTensor (D,),  # L2-normalised query embedding
             "context_feats": FloatTensor (K, D)},  # optional, see below
        ],
    }

``N`` may be 0 (``feats`` then has shape ``(0, D)`` or ``(0, 0)``). All features share one ``D``.
CWS (gallery feature x score) is applied when scoring, never in the file.

``context_feats`` (optional; written by the NAE-family heads since the query-context addition,
files without it stay valid): the CBGM query context as the reference computes it, i.e. the
query image's detections with the query box forced in at score 1 before NMS, unweighted, in NMS
order; row 0 is the query itself (``K >= 1``). CBGM uses its first ``k2`` rows; without it, CBGM
emulates the context from the query image's gallery detections.
"""

import os
import warnings
from typing import Any, Dict, Iterable, List, Mapping, Optional

import numpy as np
import torch
from numpy.exceptions import ComplexWarning

from personsearch.utils.file_io import atomic_write
from personsearch.utils.serialization import FileReadError, check_saved_types, load_torch_file

FORMAT_VERSION = 1
RESULTS_FILENAME = "search_results.pth"


def _as_tensor(value: Any, shape_hint: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float32).contiguous()
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float32)).contiguous()
    except (TypeError, ValueError) as e:
        raise ValueError(f"results: cannot convert {shape_hint} to a float tensor: {e}") from e


def build_results(
    dataset: str,
    gallery: Mapping[str, Mapping[str, Any]],
    queries: Iterable[Mapping[str, Any]],
    config: str = "",
) -> Dict[str, Any]:
    """Assemble a results dict in the documented format from numpy arrays or tensors.

    Args:
        dataset: registered dataset name.
        gallery: ``{image_id: {"boxes": (N, 4), "scores": (N,), "feats": (N, D)}}``.
        queries: dicts with ``query_index``, ``image_id``, ``bbox`` (4 numbers), ``person_id``
            and ``feat`` (D,).
        config: yaml dump of the config, or "".

    Returns:
        The results dict (float32 CPU tensors, plain Python scalars), sorted by query index.
    """
    out_gallery = {}
    for image_id, det in gallery.items():
        out_gallery[str(image_id)] = {
            key: _as_tensor(det[key], f"gallery[{image_id!r}][{key!r}]")
            for key in ("boxes", "scores", "feats")
        }
    out_queries = []
    for q in queries:
        entry = {
            "query_index": int(q["query_index"]),
            "image_id": str(q["image_id"]),
            "bbox": [float(v) for v in np.asarray(q["bbox"], dtype=np.float64).reshape(-1)],
            "person_id": int(q["person_id"]),
            "feat": _as_tensor(q["feat"], f"query {q['query_index']} 'feat'").reshape(-1),
        }
        if q.get("context_feats") is not None:
            ctx = _as_tensor(q["context_feats"], f"query {q['query_index']} 'context_feats'")
            entry["context_feats"] = ctx.reshape(-1, entry["feat"].numel())
        out_queries.append(entry)
    out_queries.sort(key=lambda q: q["query_index"])
    return {
        "format_version": FORMAT_VERSION,
        "dataset": str(dataset),
        "config": str(config or ""),
        "gallery": out_gallery,
        "queries": out_queries,
    }


def save_results(path: str, results: Mapping[str, Any]) -> None:
    """Write a results dict atomically (:func:`personsearch.utils.file_io.atomic_write`): to a
    temporary file in the same folder, then ``os.replace`` onto ``path``, so a reader never sees a
    half-written file.

    Args:
        path: destination file (its folder is created if needed).
        results: a dict in the documented format (e.g. from :func:`build_results`).
    """
    check_saved_types(dict(results), f"results file {path!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "wb", unique=True) as f:
        torch.save(dict(results), f)


def load_results(path: str) -> Dict[str, Any]:
    """Read a results file weights-only (:func:`~personsearch.utils.serialization.load_torch_file`).

    Raises:
        FileNotFoundError: no such file.
        UntrustedFileError: the file holds objects other than tensors and plain values.
        ValueError: the file is not a results dict of a known ``format_version``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Results file not found: {path!r}")
    try:
        results = load_torch_file(path, "results file")
    except FileReadError as e:  # damaged: say which file, and torch's own error
        cause = e.__cause__ or e
        raise ValueError(
            f"{path!r} is not a readable person-search results file (truncated, corrupt or not "
            f"written by torch.save): {type(cause).__name__}: {cause}"
        ) from cause
    if not isinstance(results, dict) or "format_version" not in results:
        what = type(results).__name__
        if isinstance(results, dict):
            what += f" with keys {sorted(map(str, results))[:8]}"
        raise ValueError(
            f"{path!r} is not a person-search results file (a dict with 'format_version'); it "
            f"holds a {what}."
        )
    version = results["format_version"]
    # compared as a plain int: a tensor or array here would make "!=" ambiguous
    if not _is_int(version) or version != FORMAT_VERSION:
        raise ValueError(
            f"{path!r} has format_version {version!r}; this code reads version {FORMAT_VERSION}."
        )
    return results


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# tensor dtypes that numpy (and so the scoring code) reads
_NUMPY_DTYPES = (
    torch.float16,
    torch.float32,
    torch.float64,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
)
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _array(value: Any, where: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.dtype not in _NUMPY_DTYPES:
            raise ValueError(
                f"results: {where} must be a dense real-valued tensor (float32 as written by "
                f"build_results), got dtype {value.dtype}, layout {value.layout}."
            )
        return value.detach().cpu().numpy()
    try:
        # lists may hold tensors: complex ones must fail, not lose their imaginary part
        with warnings.catch_warnings():
            warnings.simplefilter("error", ComplexWarning)
            arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RuntimeError, ComplexWarning) as e:
        raise ValueError(f"results: {where} is not numeric: {type(e).__name__}: {e}") from e
    return arr


def _integer(value: Any, where: str) -> int:
    """An integer field of the results (a Python/numpy int or a one-element integer tensor)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype in _INT_DTYPES:
        value = value.item()
    if not _is_int(value):
        raise ValueError(f"results: {where} must be an integer, got {_describe(value)}.")
    return int(value)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:60] + '...'}"


def validate_results(results: Mapping[str, Any], records: List[Mapping[str, Any]]) -> int:
    """Check that a results dict is well-formed and belongs to the dataset ``records``.

    Checks: the top-level keys; every record's image is in ``gallery`` and no other image is;
    ``boxes`` (N, 4), ``scores`` (N,), ``feats`` (N, D) with one ``D`` for all images and queries;
    every query of the records appears exactly once (by ``query_index``), on the same image with
    the same box (within 1e-3 px) and person_id; all values finite.

    Args:
        results: the loaded results dict.
        records: the dataset's records (``DatasetCatalog.get(name)``).

    Returns:
        The feature dimension D (0 if there are no features at all).

    Raises:
        ValueError: naming the image id, query index or key at fault.
    """
    if not isinstance(results, Mapping):
        raise ValueError(f"results: expected a dict, got {type(results).__name__}.")
    for key in ("gallery", "queries"):
        if key not in results:
            raise ValueError(f"results: missing top-level key {key!r}.")
    gallery = results["gallery"]
    if not isinstance(gallery, Mapping):
        raise ValueError("results: 'gallery' must be a dict {image_id: detections}.")
    record_ids = [str(r["image_id"]) for r in records]
    record_set = set(record_ids)
    unknown = [i for i in gallery if i not in record_set]
    if unknown:
        raise ValueError(
            f"results: {len(unknown)} gallery image id(s) are not in the dataset, e.g. "
            f"{unknown[0]!r}; was the file produced on another dataset?"
        )
    missing = [i for i in record_ids if i not in gallery]
    if missing:
        raise ValueError(
            f"results: {len(missing)} image(s) of the dataset are missing from 'gallery', e.g. "
            f"{missing[0]!r} (every test image needs an entry, possibly with N=0 detections)."
        )
    dim: Optional[int] = None
    dim_source = ""

    def check_dim(d: int, where: str) -> None:
        nonlocal dim, dim_source
        if d < 1:
            raise ValueError(f"results: {where} has feature dimension 0; embeddings need D >= 1.")
        if dim is None:
            dim, dim_source = d, where
        elif d != dim:
            raise ValueError(
                f"results: {where} has feature dimension {d}, but {dim_source} has {dim}."
            )

    for image_id in record_ids:
        det = gallery[image_id]
        if not isinstance(det, Mapping):
            raise ValueError(f"results: gallery[{image_id!r}] must be a dict.")
        for key in ("boxes", "scores", "feats"):
            if key not in det:
                raise ValueError(f"results: gallery[{image_id!r}] has no {key!r}.")
        boxes = _array(det["boxes"], f"gallery[{image_id!r}]['boxes']")
        scores = _array(det["scores"], f"gallery[{image_id!r}]['scores']")
        feats = _array(det["feats"], f"gallery[{image_id!r}]['feats']")
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(
                f"results: gallery[{image_id!r}]['boxes'] has shape {boxes.shape}, expected (N, 4)."
            )
        n = boxes.shape[0]
        if scores.shape != (n,):
            raise ValueError(
                f"results: gallery[{image_id!r}]['scores'] has shape {scores.shape}, expected "
                f"({n},) to match 'boxes'."
            )
        if feats.ndim != 2 or feats.shape[0] != n:
            raise ValueError(
                f"results: gallery[{image_id!r}]['feats'] has shape {feats.shape}, expected "
                f"({n}, D) to match 'boxes'."
            )
        if n > 0 or feats.shape[1] > 0:
            check_dim(feats.shape[1], f"gallery[{image_id!r}]['feats']")
        for key, arr in (("boxes", boxes), ("scores", scores), ("feats", feats)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"results: gallery[{image_id!r}][{key!r}] has non-finite values.")

    expected, expected_query = {}, {}
    for r in records:
        for q in r.get("queries", None) or []:
            expected[int(q["query_index"])] = str(r["image_id"])
            expected_query[int(q["query_index"])] = q
    queries = results["queries"]
    if not isinstance(queries, (list, tuple)):
        raise ValueError("results: 'queries' must be a list.")
    seen = set()
    for pos, q in enumerate(queries):
        if not isinstance(q, Mapping):
            raise ValueError(f"results: queries[{pos}] must be a dict.")
        for key in ("query_index", "image_id", "bbox", "person_id", "feat"):
            if key not in q:
                raise ValueError(f"results: queries[{pos}] has no {key!r}.")
        qi = _integer(q["query_index"], f"queries[{pos}]['query_index']")
        if qi in seen:
            raise ValueError(f"results: query_index {qi} appears more than once.")
        seen.add(qi)
        if qi not in expected:
            raise ValueError(f"results: query_index {qi} is not a query of the dataset.")
        if str(q["image_id"]) != expected[qi]:
            raise ValueError(
                f"results: query_index {qi} is on image {q['image_id']!r}, but the dataset puts "
                f"it on {expected[qi]!r}."
            )
        bbox = _array(q["bbox"], f"query_index {qi} 'bbox'")
        if bbox.shape != (4,) or not np.all(np.isfinite(bbox)):
            raise ValueError(f"results: query_index {qi} 'bbox' must be 4 finite numbers.")
        rec_q = expected_query[qi]
        if np.any(np.abs(bbox - np.asarray(rec_q["bbox"], np.float64)) > 1e-3):
            raise ValueError(
                f"results: query_index {qi} 'bbox' {bbox.tolist()} differs from the dataset's "
                f"{list(rec_q['bbox'])} (boxes must be in original image pixels)."
            )
        person_id = _integer(q["person_id"], f"query_index {qi} 'person_id'")
        if person_id != int(rec_q.get("person_id", -1)):
            raise ValueError(
                f"results: query_index {qi} has person_id {person_id}, the dataset "
                f"{int(rec_q.get('person_id', -1))}."
            )
        feat = _array(q["feat"], f"query_index {qi} 'feat'")
        if feat.ndim != 1:
            raise ValueError(
                f"results: query_index {qi} 'feat' has shape {feat.shape}, expected (D,)."
            )
        check_dim(feat.shape[0], f"query_index {qi} 'feat'")
        if not np.all(np.isfinite(feat)):
            raise ValueError(f"results: query_index {qi} 'feat' has non-finite values.")
        if q.get("context_feats") is not None:
            ctx = _array(q["context_feats"], f"query_index {qi} 'context_feats'")
            if ctx.ndim != 2 or ctx.shape[0] < 1 or ctx.shape[1] != feat.shape[0]:
                raise ValueError(
                    f"results: query_index {qi} 'context_feats' has shape {ctx.shape}, expected "
                    f"(K, {feat.shape[0]}) with K >= 1 (row 0 = the query)."
                )
            if not np.all(np.isfinite(ctx)):
                raise ValueError(
                    f"results: query_index {qi} 'context_feats' has non-finite values."
                )
    missing_q = sorted(set(expected) - seen)
    if missing_q:
        raise ValueError(
            f"results: {len(missing_q)} query index(es) of the dataset are missing, e.g. "
            f"{missing_q[0]} (on image {expected[missing_q[0]]!r})."
        )
    return 0 if dim is None else int(dim)
