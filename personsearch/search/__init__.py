"""Search your own images and videos with a trained person-search model.

* :mod:`.sources`: image folders and videos (OpenCV), content hashes;
* :mod:`.index`: the on-disk index (append-only float16 shards + an atomic JSON manifest);
* :mod:`.indexer`: incremental, resumable indexing with a
  :class:`~personsearch.engine.PersonSearchPredictor`;
* :mod:`.exact` / :mod:`.faiss_backend` (:mod:`.backends` picks one): top-k search;
* :mod:`.rerank`: CBGM re-ranking; :mod:`.searcher`: queries end to end;
* :mod:`.report`: PNG contact sheet and self-contained HTML report.

``tools/search.py`` is the command line over these.
"""

from .backends import SEARCH_BACKENDS, build_searcher
from .exact import ExactSearcher
from .index import Entries, IndexMismatchError, SearchIndex, SearchIndexError, model_fingerprint
from .indexer import Indexer, IndexStats
from .report import Hit, render_contact_sheet, render_html
from .searcher import (
    GallerySearch,
    QuerySpec,
    embed_queries,
    load_hit_pictures,
    predictor_for_index,
)
