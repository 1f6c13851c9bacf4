"""The synthetic model zoo of ``tools/model_zoo.py``: every config of a group trained over several
seeds, each run scored under every published protocol, and the tables and chart of the results.

One component per file:

* :mod:`.groups`: the groups of configs (``GROUPS``) and the selection of a command line;
* :mod:`.runs`: training (``tools/train_net.py`` subprocesses), resuming and scoring one run, and
  a plan of runs in parallel within a deadline;
* :mod:`.markdown`: mean ± std over seeds, the markdown tables and the marked section of a file they
  replace;
* :mod:`.chart`: the bar chart, one panel per group.
"""

from .chart import PLOTTED, plot
from .groups import GROUPS, select_groups, unique_configs
from .markdown import COLUMNS, mean_std, replace_section, table, zoo_markdown
from .runs import (
    is_finished,
    prepare_synthetic,
    read_plan,
    run_device,
    run_dir,
    run_one,
    run_plan,
    score_run,
    training_minutes,
)
