"""Subprocess entry point of one benchmark measurement.

    python -m benchmarks.worker JOB.json RESULT.json
    python -m benchmarks.worker --serve JOB.json

The first form reads a :class:`~benchmarks.jobs.Job`, runs it and writes the result
dict (with ``error`` set if the measurement failed); the exit status is 1 in that case. The second
prepares the job and then times one call per ``step`` line on stdin, for the interleaved runs of
:mod:`benchmarks.interleave`.
"""

import json
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    serve = argv[:1] == ["--serve"]
    if (serve and len(argv) != 2) or (not serve and len(argv) != 2):
        print("usage: python -m benchmarks.worker JOB.json RESULT.json")
        print("       python -m benchmarks.worker --serve JOB.json")
        return 2
    import personsearch  # noqa: F401  (registers the components)

    from .jobs import Job, run_job

    with open(argv[-1] if serve else argv[0]) as f:
        job = Job.from_json(f.read())
    if serve:
        from .interleave import serve as serve_job

        return serve_job(job)
    result = run_job(job)
    with open(argv[1], "w") as f:
        json.dump(result, f)
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
