#!/usr/bin/env python
"""Installs the `personsearch` package (a Detectron2 extension for one-step person search).

``install_requires`` holds ranges only, so that ``pip install -e .`` keeps the PyTorch and numpy a
user already has (any torch >= 2.3, numpy 1 or 2). The exact versions that CI tests are pinned
per lane in ``requirements/`` (docs/INSTALL.md). Detectron2 itself is deliberately not listed:
FAIR publishes no PyPI package (pip cannot resolve the name); install it first, from source or
as the reference lane's binary wheel (``requirements/reference.txt``).
"""

from setuptools import find_packages, setup

setup(
    name="personsearch",
    version="0.1.0",
    description="One-step person search (OIM, NAE, SeqNet, UGAS) as a Detectron2 extension",
    python_requires=">=3.10",
    packages=find_packages(include=["personsearch", "personsearch.*"]),
    install_requires=[
        "torch>=2.3",
        "torchvision>=0.18",
        "fvcore>=0.1.5",
        "numpy>=1.25",  # numpy.exceptions; numpy 2 works
        "scipy",
        "scikit-learn",
        "matplotlib",
        "pillow",
        "tqdm",
        "opencv-python-headless",
    ],
    # optional: the FAISS backend of tools/search.py (pip install -e ".[faiss]")
    extras_require={"faiss": ["faiss-cpu"]},
)
