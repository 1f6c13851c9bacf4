"""Search your own images and videos with a trained person-search model, at archive scale.

* :mod:`.sources`: image folders and videos (OpenCV), content hashes;
* :mod:`.loading`: reading and decoding in DataLoader workers;
* :mod:`.index` (+ :mod:`.database`, :mod:`.entries`): the on-disk index: float16 embeddings in
  one memory-mappable file, metadata in SQLite, commits with CRC-32; :mod:`.legacy`: format 1;
* :mod:`.indexer`: incremental, resumable, batched and multi-process (:mod:`.distributed`)
  indexing with a :class:`~personsearch.engine.PersonSearchPredictor`;
* :mod:`.exact` / :mod:`.faiss_backend`: exact top-k; :mod:`.ann`: the approximate index (FAISS
  IVF-PQ / IVF-Flat);
* :mod:`.filters`: camera, source, time, path, score and uncertainty filters;
* :mod:`.gallery`: queries against an index (exact, approximate + exact re-ranking, filtered);
  :mod:`.rerank`: CBGM re-ranking; :mod:`.searcher`: the query model and query embeddings;
* :mod:`.report`: PNG contact sheet and self-contained HTML report;
* :mod:`.cli`: the command line (``tools/search.py`` only parses and dispatches to it).

The package is an application on top of the model (see :mod:`personsearch.apps`): it runs the
model only through :class:`~personsearch.engine.PersonSearchPredictor` (and reuses the core's CBGM
and drawing helpers), and ``import personsearch`` does not import it. It was
``personsearch.search`` before (still importable, with a ``DeprecationWarning``, for one release);
the benchmark protocol is :mod:`personsearch.evaluation.search_protocol`.
"""

from .ann import ANN_KINDS, AnnIndex, update_ann
from .backends import SEARCH_BACKENDS, build_searcher
from .entries import Entries
from .errors import IndexMismatchError, MissingFieldError, SearchIndexError
from .exact import ExactSearcher
from .filters import SearchFilter
from .gallery import GallerySearch
from .index import Columns, SearchIndex, model_fingerprint
from .indexer import Indexer, IndexStats
from .report import Hit, render_contact_sheet, render_html, write_query_report
from .searcher import (
    QuerySpec,
    dataset_query_specs,
    embed_queries,
    load_hit_pictures,
    predictor_for_index,
)
from .sources import folder_image_source, records_image_source
