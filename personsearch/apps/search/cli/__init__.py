"""The command line of the search application (``tools/search.py``).

* :mod:`.parser`: the subcommands and their flags;
* :mod:`.options`: flags -> library objects (filter, approximate-index parameters, split records);
* :mod:`.index_command`: ``index`` (one process, or several through detectron2's ``launch``);
* :mod:`.query_command`: ``query`` (hits, contact sheets, HTML reports);
* :mod:`.index_admin`: ``info``, ``ann``, ``verify``, ``migrate``.

Each ``run_*`` takes the parsed ``argparse.Namespace`` and returns a dict of what it did (the
tests read it); errors in the user's input are ``ValueError`` / ``OSError`` with a message that
names the flag, file or index.
"""

from .index_admin import run_ann, run_info, run_migrate, run_verify
from .index_command import run_index
from .parser import build_parser
from .query_command import run_query

__all__ = [
    "build_parser",
    "run_ann",
    "run_index",
    "run_info",
    "run_migrate",
    "run_query",
    "run_verify",
]
