import sys
import types

import numpy as np
import pytest

from personsearch.evaluation import SearchOptions, score_results

from .toy import A, toy_results, toy_split

# Detection over the toy split: 6 GT, all found; one false positive (C, 0.95). Ranking by score:
# 1.0 x3 (T), 0.95 F, 0.9 T, 0.8 T, 0.7 T -> AP = 3/6 * 1 + 1/6 * 4/5 + 1/6 * 5/6 + 1/6 * 6/7
DET_AP = 100 * (0.5 + (4 / 5 + 5 / 6 + 6 / 7) / 6)


def test_prw_protocol_same_camera():
    records, outputs = toy_split()
    out = score_results(toy_results(records, outputs), records, {"protocol": "prw"})
    # query 0 (pid 7, cam 1), gallery = images 1, 2, 3: sims 0.95 F (img2 A), 0.9 T (img1),
    #   0.67 F (img3 C: 0.707 * 0.95), 0.6 T (img2 B), 0 F -> AP (1/2 + 2/4) / 2 = 0.5
    # query 1 (pid 5), gallery = images 0, 1, 2: 0.8 F, 0.64 F, 0.436 F, 0.312 T, 0 F -> 0.25
    assert out["search"] == pytest.approx({"mAP": 37.5, "top1": 0.0, "top5": 100.0, "top10": 100.0})
    assert out["detection"] == pytest.approx({"AP": DET_AP, "recall": 100.0})
    assert out["info"]["per_query_ap"] == pytest.approx([0.5, 0.25])
    assert out["info"]["num_queries_without_match"] == 0


def test_prw_protocol_cross_camera():
    records, outputs = toy_split()
    opts = SearchOptions(cross_camera=True)
    out = score_results(toy_results(records, outputs), records, {"protocol": "prw"}, opts)
    # query 0: images 2, 3 only: 0.95 F, 0.67 F, 0.6 T, 0 F -> 1/3; query 1: images 0, 1 do not
    # show pid 5 -> excluded from the means
    assert out["search"]["mAP"] == pytest.approx(100 / 3)
    assert out["search"]["top1"] == 0.0 and out["search"]["top5"] == 100.0
    assert out["info"]["num_queries_without_match"] == 1


def test_json_protocol_with_gallery_lists():
    records, outputs = toy_split(gallery_lists=True)
    out = score_results(toy_results(records, outputs), records, {"protocol": "json"})
    # query 0 lists c2_a, c1_b, c1_b: 0.95 F, 0.9 T, 0.9 T (tie), 0.6 T; count_gt 3
    #   -> AP = 2/3 * 2/3 + 1/3 * 3/4; query 1 has no list: all-but-query -> 0.25
    q0 = 2 / 3 * 2 / 3 + 1 / 3 * 3 / 4
    assert out["info"]["per_query_ap"] == pytest.approx([q0, 0.25])
    assert out["search"]["mAP"] == pytest.approx(100 * (q0 + 0.25) / 2)


def test_lowres_subset_any_protocol():
    records, outputs = toy_split()
    records[3]["queries"][0]["bbox"] = [0.0, 0.0, 20.0, 30.0]  # query 1 becomes the smallest
    results = toy_results(records, outputs)
    opts = SearchOptions(subset="lowres", lowres_fraction=0.5)
    out = score_results(results, records, {"protocol": "prw"}, opts)
    assert out["info"]["query_indices"] == [1]
    assert out["info"]["lowres_height_threshold"] == 30.0
    assert out["search"]["mAP"] == pytest.approx(25.0)
    with pytest.raises(ValueError, match="only for CUHK-SYSU"):
        score_results(results, records, {"protocol": "prw"}, SearchOptions(subset="occlusion"))


def test_cws_off_and_det_thresh():
    records, outputs = toy_split()
    results = toy_results(records, outputs)
    # det_thresh 0.96 keeps only the score-1.0 detections (images 1 and 2)
    out = score_results(results, records, {"protocol": "prw"}, SearchOptions(det_thresh=0.96))
    # query 0: 0.95 F, 0.9 T, 0.6 T -> (1/2 + 2/3) / 2; query 1: 0.8 F, 0.436 F, 0.312 T -> 1/3
    expected = ((0.5 + 2 / 3) / 2 + 1 / 3) / 2
    assert out["search"]["mAP"] == pytest.approx(100 * expected)
    # CWS off: query 0: 0.95 F, 0.9 T, 0.707 F (C unweighted), 0.6 T -> 0.5; query 1: img0's B
    # rises from 0.64 to 1.0, still a negative above the positive 0.312 -> 0.25
    off = score_results(results, records, {"protocol": "prw"}, SearchOptions(cws=False))
    assert off["info"]["per_query_ap"] == pytest.approx([0.5, 0.25])


def test_unknown_protocol_and_mismatching_results():
    records, outputs = toy_split()
    results = toy_results(records, outputs)
    with pytest.raises(ValueError, match="Unknown person-search protocol"):
        score_results(results, records, {"protocol": "market"})
    with pytest.raises(ValueError, match="missing from 'gallery'"):
        score_results(results, records + [dict(records[1], image_id="x.jpg")], {"protocol": "prw"})


@pytest.fixture
def fake_cuhk_module(monkeypatch):
    """Stands in for personsearch.data.datasets.cuhk_sysu.load_cuhk_sysu_protocol."""
    calls = []

    def load_cuhk_sysu_protocol(root, gallery_size=100, subset=None):
        calls.append((root, gallery_size, subset))
        query = {"image_id": "c1_a.jpg", "bbox": A}
        if subset == "resolution":
            return [{"query": query, "gallery": [{"image_id": "c1_b.jpg", "bbox": A}]}]
        if subset == "occlusion":
            return [{"query": {"image_id": "c1_a.jpg", "bbox": [1, 2, 3, 4]}, "gallery": []}]
        return [
            {
                "query": query,
                "gallery": [
                    {"image_id": "c2_a.jpg", "bbox": None},
                    {"image_id": "c1_b.jpg", "bbox": A},
                ],
            }
        ]

    mod = types.ModuleType("personsearch.data.datasets.cuhk_sysu")
    mod.load_cuhk_sysu_protocol = load_cuhk_sysu_protocol
    monkeypatch.setitem(sys.modules, "personsearch.data.datasets.cuhk_sysu", mod)
    return calls


def test_cuhk_protocol_glue(fake_cuhk_module):
    records, outputs = toy_split()
    results = toy_results(records, outputs)
    meta = {"protocol": "cuhk_sysu", "root": "/data/CUHK-SYSU"}
    # TestG: query 0 only; entries c2_a (no GT): 0.95 F, 0.6 F; c1_b (GT A): 0.9 T -> AP 1/2
    out = score_results(results, records, meta, SearchOptions(gallery_size=100))
    assert fake_cuhk_module[-1] == ("/data/CUHK-SYSU", 100, None)
    assert out["info"]["query_indices"] == [0]
    assert out["search"]["mAP"] == pytest.approx(50.0)
    # full set: TestG50 lists plus every other image except the query's (c2_b): adds C (0.67)
    # and A (0) as negatives -> 0.95 F, 0.9 T, ... -> still 1/2; image c1_a is never added
    full = score_results(results, records, meta, SearchOptions(gallery_size=-1))
    assert fake_cuhk_module[-1] == ("/data/CUHK-SYSU", 50, None)
    assert full["search"]["mAP"] == pytest.approx(50.0)
    res = score_results(results, records, meta, SearchOptions(subset="resolution"))
    assert fake_cuhk_module[-1][2] == "resolution" and res["search"]["mAP"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match=r"query #0 \(image 'c1_a.jpg'"):
        score_results(results, records, meta, SearchOptions(subset="occlusion"))
    with pytest.raises(ValueError, match="no 'root'"):
        score_results(results, records, {"protocol": "cuhk_sysu"})


def test_options_from_config():
    from detectron2.config import get_cfg

    from personsearch.config import add_personsearch_config

    cfg = add_personsearch_config(get_cfg())
    assert SearchOptions.from_config(cfg) == SearchOptions()
    cfg.TEST.SEARCH.CBGM.ENABLED = True
    cfg.TEST.SEARCH.CBGM.K1 = 30
    cfg.TEST.SEARCH.SUBSET = "lowres"
    opts = SearchOptions.from_config(cfg)
    assert (opts.cbgm, opts.cbgm_k1, opts.subset) == (True, 30, "lowres")
    with pytest.raises(ValueError, match="Unknown search subset"):
        SearchOptions(subset="tiny")
    assert np.isclose(SearchOptions().det_thresh, 0.5)


def test_gallery_score_thresh_and_its_deprecated_alias(tmp_path):
    """TEST.SEARCH.DET_THRESH (the old name of GALLERY_SCORE_THRESH) still works for one release:
    from a yaml file, the command line or a config built by hand, with a FutureWarning."""
    from detectron2.config import get_cfg

    from personsearch.config import add_personsearch_config, get_person_search_cfg

    cfg = get_person_search_cfg(opts=["TEST.SEARCH.GALLERY_SCORE_THRESH", "0.25"])
    assert SearchOptions.from_config(cfg).det_thresh == 0.25
    assert SearchOptions.from_config(cfg).detection_thresh == 0.01  # the other threshold

    with pytest.warns(FutureWarning, match="DET_THRESH is deprecated.*GALLERY_SCORE_THRESH"):
        cfg = get_person_search_cfg(opts=["TEST.SEARCH.DET_THRESH", "0"])
    assert cfg.TEST.SEARCH.GALLERY_SCORE_THRESH == 0.0 and cfg.TEST.SEARCH.DET_THRESH is None
    assert isinstance(cfg.TEST.SEARCH.GALLERY_SCORE_THRESH, float)
    assert SearchOptions.from_config(cfg).det_thresh == 0.0  # no second warning: upgraded

    yaml = tmp_path / "old.yaml"
    yaml.write_text("TEST:\n  SEARCH:\n    DET_THRESH: 0.7\n")
    with pytest.warns(FutureWarning, match="DET_THRESH"):
        cfg = get_person_search_cfg(str(yaml))
    assert cfg.TEST.SEARCH.GALLERY_SCORE_THRESH == 0.7

    manual = add_personsearch_config(get_cfg())  # merged without get_person_search_cfg
    manual.merge_from_file(str(yaml))
    manual.freeze()
    with pytest.warns(FutureWarning, match="DET_THRESH"):
        assert SearchOptions.from_config(manual).det_thresh == 0.7
    assert manual.TEST.SEARCH.DET_THRESH == 0.7  # the caller's config is not changed

    with pytest.raises(ValueError, match="both given"):
        get_person_search_cfg(
            opts=["TEST.SEARCH.DET_THRESH", "0.3", "TEST.SEARCH.GALLERY_SCORE_THRESH", "0.4"]
        )
