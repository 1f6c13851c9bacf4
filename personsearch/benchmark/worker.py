"""Subprocess entry point of one benchmark measurement.

    python -m personsearch.benchmark.worker JOB.json RESULT.json

Reads a :class:`~personsearch.benchmark.jobs.Job`, runs it and writes the result dict (with
``error`` set if the measurement failed); the exit status is 1 in that case.
"""

import json
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m personsearch.benchmark.worker JOB.json RESULT.json")
        return 2
    import personsearch  # noqa: F401  (registers the components)

    from .jobs import Job, run_job

    with open(argv[0]) as f:
        job = Job.from_json(f.read())
    result = run_job(job)
    with open(argv[1], "w") as f:
        json.dump(result, f)
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
