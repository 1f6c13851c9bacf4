"""tools/train_net.py end to end on a tiny synthetic dataset in a temporary folder."""

import json
import os
import runpy

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from tests.common import CONFIGS, REPO, tiny_opts

TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")


def train_net_main(argv):
    module = runpy.run_path(TRAIN_NET)  # the script, not a copy of its logic
    parser = module["build_parser"]()
    return module["main"](parser.parse_args(argv))


METRICS = {"search": ("mAP", "top1", "top5", "top10"), "detection": ("AP", "recall")}


def check_metrics(res):
    assert {t: tuple(m) for t, m in res.items()} == METRICS
    for task in res.values():
        for v in task.values():
            assert isinstance(v, float) and 0.0 <= v <= 100.0


def test_train_then_evaluate(tiny_synthetic, tmp_path):
    torch.manual_seed(0)
    cfg_file = os.path.join(CONFIGS, "Base-PersonSearch.yaml")
    opts = tiny_opts(tiny_synthetic, tmp_path, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
    train_net_main(["--config-file", cfg_file, *opts])
    # the final evaluation's metrics are logged with the training metrics
    rows = [json.loads(line) for line in open(tmp_path / "metrics.json")]
    final = [r for r in rows if "search/mAP" in r][-1]
    check_metrics({t: {m: final[f"{t}/{m}"] for m in M} for t, M in METRICS.items()})
    # checkpoints (atomic, tagged), the results file and the config dump are in OUTPUT_DIR
    assert (tmp_path / "model_final.pth").exists() and (tmp_path / "model_0000001.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert (tmp_path / "inference" / tiny_synthetic["test"] / "search_results.pth").exists()
    assert (tmp_path / "config.yaml").exists()
    # the OIM memories were trained and saved with the model
    state = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    assert state["roi_heads.reid_loss.lut"].abs().sum() > 0

    # --eval-only with the trained weights, and with ground-truth boxes as detections
    out2 = tmp_path / "eval"
    weights = str(tmp_path / "model_final.pth")
    res2 = train_net_main(
        ["--config-file", cfg_file, "--eval-only"]
        + tiny_opts(
            tiny_synthetic, out2, "MODEL.WEIGHTS", weights, "TEST.SEARCH.USE_GT_BOXES", "True"
        )
    )
    check_metrics(res2)
    # every ground-truth box is "detected" with score 1: detection recall is 100%
    assert res2["detection"]["recall"] == pytest.approx(100.0)


def test_eval_only_with_random_weights(tiny_synthetic, tmp_path):
    """The untrained baseline of the README: an untrained model detects nobody (score < 0.5)."""
    cfg_file = os.path.join(CONFIGS, "Base-PersonSearch.yaml")
    res = train_net_main(
        ["--config-file", cfg_file, "--eval-only", *tiny_opts(tiny_synthetic, tmp_path)]
    )
    check_metrics(res)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_config_without_cuda_says_how_to_use_the_cpu():
    module = runpy.run_path(TRAIN_NET)
    args = module["build_parser"]().parse_args(
        ["--config-file", os.path.join(CONFIGS, "OIM_R50.yaml")]
    )
    with pytest.raises(RuntimeError, match="add 'MODEL.DEVICE cpu'"):
        module["setup"](args)


def test_register_json_trains_and_evaluates_on_your_own_data(tiny_synthetic, tmp_path):
    """``--register-json`` makes JSON splits usable in DATASETS.TRAIN/TEST without a launcher."""
    from personsearch.data.datasets.json_writer import save_person_search_json

    names, flags = {}, []
    for split in ("train", "test"):
        records = DatasetCatalog.get(tiny_synthetic[split])
        root = os.path.dirname(records[0]["file_name"])
        json_file = str(tmp_path / f"{split}.json")
        save_person_search_json(records, json_file, image_root=root)
        names[split] = f"tiny_json_trainnet_{split}"
        flags += ["--register-json", names[split], json_file, root]
    cfg_file = os.path.join(CONFIGS, "Base-PersonSearch.yaml")
    try:
        train_net_main(
            ["--config-file", cfg_file, *flags]
            + tiny_opts(names, tmp_path, "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()")
        )
        rows = [json.loads(line) for line in open(tmp_path / "metrics.json")]
        final = [r for r in rows if "search/mAP" in r][-1]
        check_metrics({t: {m: final[f"{t}/{m}"] for m in M} for t, M in METRICS.items()})
        assert (tmp_path / "inference" / names["test"] / "search_results.pth").exists()
    finally:
        for name in names.values():
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
                MetadataCatalog.remove(name)


def test_seqnet_cbgm_online_equals_offline(tiny_synthetic, tmp_path):
    """``TEST.SEARCH.CBGM.ENABLED True`` with ``--eval-only`` and ``evaluate_search.py --cbgm`` on
    the saved results file give the same numbers; the file holds the exact query contexts."""
    from tests.common import load_tool

    torch.manual_seed(0)
    cfg_file = os.path.join(CONFIGS, "synthetic", "SeqNet_R10.yaml")
    opts = tiny_opts(tiny_synthetic, tmp_path, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                     "TEST.SEARCH.GALLERY_SCORE_THRESH", "0.0")  # fmt: skip
    train_net_main(["--config-file", cfg_file, *opts])
    weights = str(tmp_path / "model_final.pth")
    online = train_net_main(
        ["--config-file", cfg_file, "--eval-only"]
        + tiny_opts(tiny_synthetic, tmp_path / "cbgm", "MODEL.WEIGHTS", weights,
                    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                    "TEST.SEARCH.GALLERY_SCORE_THRESH", "0.0",
                    "TEST.SEARCH.CBGM.ENABLED", "True")  # fmt: skip
    )
    results = tmp_path / "cbgm" / "inference" / tiny_synthetic["test"] / "search_results.pth"
    saved = torch.load(results, weights_only=True)
    contexts = [q["context_feats"] for q in saved["queries"]]
    assert all(
        c.shape[0] >= 1 and torch.equal(c[0], q["feat"]) for c, q in zip(contexts, saved["queries"])
    )
    tool = load_tool("evaluate_search")
    out = tmp_path / "offline"
    tool.main(["--results", str(results), "--dataset", tiny_synthetic["test"], "--cbgm",
               "--det-thresh", "0.0", "--gallery-size", "4", "--output", str(out)])  # fmt: skip
    offline = json.load(open(out / "metrics.json"))
    assert offline["search"] == pytest.approx(online["search"], abs=1e-9)
    assert offline["info"]["cbgm_k1"] == 10 and offline["info"]["cbgm_k2"] == 3  # CUHK-SYSU's
    assert offline["info"]["cbgm_exact_contexts"] == len(contexts)
