"""Fixtures of the tool tests: a tiny synthetic dataset (tests.common.tiny_opts: a model on it)."""

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from personsearch.data.datasets.cuhk_sysu import register_cuhk_sysu
from personsearch.data.datasets.synthetic import generate_synthetic_dataset


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic"))
    generate_synthetic_dataset(
        root,
        num_train_images=6,
        num_test_images=6,
        num_train_ids=4,
        num_test_ids=3,
        gallery_sizes=(4,),
        workers=1,
        progress=False,
    )
    names = {}
    for split in ("train", "test"):
        name = f"tiny_synthetic_trainnet_{split}"
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_cuhk_sysu(name, root, split)
        names[split] = name
    return names
