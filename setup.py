#!/usr/bin/env python
"""Installs the `personsearch` package (a Detectron2 extension for one-step person search).

Detectron2 itself is deliberately not listed in ``install_requires``: FAIR publishes no PyPI
package, so ``requirements.txt`` pins a binary wheel of it instead (see README, "Installation").
"""

from setuptools import find_packages, setup

setup(
    name="personsearch",
    version="0.1.0",
    description="One-step person search (OIM, NAE, SeqNet, UGAS) as a Detectron2 extension",
    python_requires=">=3.10",
    packages=find_packages(include=["personsearch", "personsearch.*"]),
    install_requires=[
        "torch>=2.0",
        "fvcore",
        "numpy<2",
        "scipy",
        "scikit-learn",
        "matplotlib",
        "tqdm",
        "opencv-python-headless",
    ],
    # optional: the FAISS backend of tools/search.py (pip install -e ".[faiss]")
    extras_require={"faiss": ["faiss-cpu"]},
)
