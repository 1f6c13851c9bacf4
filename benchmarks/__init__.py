"""The benchmark harness of ``tools/benchmark.py`` (side-by-side speed and memory of
person-search models: ``compare``, ``throughput``, ``official-weights``, ``optimize-check``,
``flops``; the ``train``, ``inference``, ``search-eval``, ``search-index`` and ``search-scale``
timings).

An annex of the repository, not part of the installed ``personsearch`` package: it loads the
official repositories at run time (inserting them into ``sys.path``, patching torchvision's resnet50
and stubbing their missing modules), which a library must not do to its users' interpreter. The
tool and the tests import it from the repository root.

One component per file:

* :mod:`.inputs`: the deterministic benchmark image, query boxes and training targets that every
  model of a run receives (the same tensors for our models, the plain detector and the official
  implementations);
* :mod:`.forcing`: the "forced" mode that makes a random-weight model do the full amount of work
  (BatchNorm statistics calibrated on the benchmark images, RoI score threshold 0, NMS 1.0);
* :mod:`.counting`: hooks that count the proposals, pooled RoIs and detections actually
  processed;
* :mod:`.timing`: CUDA-synchronised timing (wall and CPU time), robust statistics, peak memory;
* :mod:`.flops`: the model FLOPs of a call (``torch.utils.flop_counter``); :mod:`.peak`: the
  device's FLOP rate (a measured matrix product, vendor peaks), the MFU denominator;
* :mod:`.models`: building our models and the plain detectron2 Faster R-CNN C4 baseline that
  matches each of them;
* :mod:`.measure`: inference, query-embedding and training-step measurements of our models;
* :mod:`.official_code`: run-time adapters of the official SeqNet / NAE / NAE+ code (never vendored;
  what is patched and why is in its docstring), :mod:`.measure_official`: their measurements;
* :mod:`.jobs`: one measurement as a JSON-able job, run in a fresh subprocess or in-process;
* :mod:`.interleave`: several models' measurements in persistent processes, calls alternating in
  rounds (``--interleave``);
* :mod:`.throughput`: the batch x precision x layout sweep in one process (``throughput``, the GPU
  script ``tools/gpu_bench.sh``);
* :mod:`.official_weights`: the official model's calibrated weights and their conversion
  (``official-weights``); :mod:`.tolerance`: output differences of ``TEST.OPTIMIZE``
  (``optimize-check``);
* :mod:`.worker`: the subprocess entry point (``python -m benchmarks.worker``);
* :mod:`.search_eval`, :mod:`.search_index`, :mod:`.search_scale`: the synthetic results set, the
  random index and the simulated archive of the search timings;
* :mod:`.cli`: one ``run_<name>(args)`` per subcommand of ``tools/benchmark.py``;
* :mod:`.tables`: system description, rows with ratios to the plain detector, markdown table;
* :mod:`.compare`: the whole comparison (validation, plan, runs, outputs);
* :mod:`.parser`: the command line of ``tools/benchmark.py`` (one subcommand each);
* :mod:`.zoo`: the model zoo's multi-seed training runs, tables and chart (``tools/model_zoo.py``).

Import from the modules (``from benchmarks.compare import run_compare``): the package itself
imports nothing, so that a tool's ``--help`` does not wait for torch.
"""
