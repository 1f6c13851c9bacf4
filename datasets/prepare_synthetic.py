#!/usr/bin/env python
"""Prepare the built-in synthetic person-search dataset (renders it, CUHK-SYSU's file format).

    python datasets/prepare_synthetic.py                      # into $DETECTRON2_DATASETS/synthetic
    python datasets/prepare_synthetic.py --output /data/synthetic --workers 4

The registered splits ``synthetic_train`` / ``synthetic_test`` only load this folder: when it is
missing, or was made by another generator version or with other parameters, loading them fails
with an error that names the folder and this command. Running it again is a no-op while the folder
is current (the generator version and parameters recorded in ``synthetic_info.json`` match);
otherwise the set is rendered into a temporary sibling folder that then replaces the old one (same
seed, same images and annotations, byte for byte). The renderer lives next to this script
(``datasets/synthetic_generator/``), outside the installed ``personsearch`` package; design and
parameters: docs/SYNTHETIC.md.
"""

import argparse
import os
import sys

# the renderer is a package next to this script (datasets/synthetic_generator/)
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from synthetic_generator import default_root, ensure_synthetic_dataset  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # the dataset folder the registered splits load (default: $DETECTRON2_DATASETS/synthetic)
    parser.add_argument(
        "--output", default="", help="dataset folder (default: $DETECTRON2_DATASETS/synthetic)"
    )
    # rendering processes (1: render in this process)
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None, **params) -> int:
    """Prepare the dataset; ``params`` override generator parameters (tests make tiny sets; the
    registered splits load only the default set that the command line makes)."""
    args = build_parser().parse_args(argv)
    root = args.output or default_root()
    if args.workers < 1:
        raise SystemExit(f"prepare_synthetic: --workers must be >= 1, got {args.workers}")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        root = ensure_synthetic_dataset(
            root, workers=args.workers, progress=not args.no_progress, **params
        )
    except (FileExistsError, PermissionError, NotADirectoryError) as e:
        raise SystemExit(f"prepare_synthetic: {e}") from None
    except OSError as e:
        raise SystemExit(f"prepare_synthetic: cannot write the dataset to {root!r}: {e}") from None
    print(f"synthetic dataset ready in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
