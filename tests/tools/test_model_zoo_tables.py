"""The outputs of the model zoo (benchmarks.zoo): the groups, mean ± std over seeds, the markdown
tables, the marked section they replace, the chart and a run's device, on hand-made results."""

import os

import pytest

from benchmarks.zoo import (
    COLUMNS,
    GROUPS,
    mean_std,
    plot,
    replace_section,
    run_device,
    select_groups,
    table,
    unique_configs,
    zoo_markdown,
)
from tests.common import REPO


def _result(map_, device="cpu", **more):
    res = {key: None for _, key in COLUMNS}
    res.update(mAP=map_, lowres_mAP=map_ / 2, gt_mAP=map_ + 10, device=device, **more)
    return res


def test_mean_std_uses_the_sample_deviation_and_skips_missing_values():
    assert mean_std([10.0, 12.0, 14.0]) == "12.0 ± 2.0"  # stdev with n - 1
    assert mean_std([1.0, None, 2.0]) == "1.5 ± 0.7"
    assert mean_std([None, 5.26]) == "5.3"  # one value: no deviation
    assert mean_std([]) == "-" and mean_std([None, None]) == "-"


def test_table_rows_count_finished_seeds_and_list_devices():
    results = {
        "a.yaml": [_result(10.0), {}, _result(14.0, device="NVIDIA H200", train_minutes=1.5)],
    }
    md = table([("A", "a.yaml"), ("B", "b.yaml")], results, seeds=[0, 1, 2]).splitlines()
    titles = " | ".join(title for title, _ in COLUMNS)
    assert md[0] == f"| model | config | seeds | {titles} | device |"
    assert md[1] == "|" + "---|" * (4 + len(COLUMNS))
    cells = {"mAP": "12.0 ± 2.8", "lowres_mAP": "6.0 ± 1.4", "gt_mAP": "22.0 ± 2.8"}
    cells["train_minutes"] = "1.5"
    row_a = " | ".join(cells.get(key, "-") for _, key in COLUMNS)
    assert md[2] == f"| A | `a.yaml` | 2/3 | {row_a} | NVIDIA H200, cpu |"
    row_b = " | ".join("-" for _ in COLUMNS)
    assert md[3] == f"| B | `b.yaml` | 0/3 | {row_b} | - |"  # not run at all
    assert len(md) == 4


def test_zoo_markdown_and_the_section_it_replaces(tmp_path):
    groups = {"g1": [("A", "a.yaml")], "g2": [("B", "b.yaml"), ("A again", "a.yaml")]}
    results = {"a.yaml": [_result(10.0)], "b.yaml": [_result(20.0, device="?")]}
    md = zoo_markdown(groups, results, [0], 100, "python tools/model_zoo.py --seeds 0")
    head = "Synthetic model zoo, seeds [0], gallery size 100, `python tools/model_zoo.py --seeds 0`"
    assert md == "\n".join(
        [head, "", "**g1**", "", table(groups["g1"], results, [0]), "", "**g2**", ""]
        + [table(groups["g2"], results, [0]), ""]
    )
    doc = tmp_path / "DOC.md"
    doc.write_text("a\n<!-- model-zoo:s:begin -->\nold\n<!-- model-zoo:s:end -->\nb\n")
    replace_section(str(doc), "s", md)
    assert doc.read_text() == f"a\n<!-- model-zoo:s:begin -->\n{md}<!-- model-zoo:s:end -->\nb\n"
    with pytest.raises(ValueError, match="no <!-- model-zoo:other:begin -->"):
        replace_section(str(doc), "other", md)


def test_groups_selection_and_every_config_exists():
    assert select_groups(["fpn"]) == {"fpn": GROUPS["fpn"]}
    assert select_groups(["fpn"], ["synthetic/x/OIM_R10.yaml"]) == {
        "configs": [("OIM_R10", "synthetic/x/OIM_R10.yaml")]
    }
    both = select_groups(["methods", "fpn"])
    assert unique_configs(both) == [c for _, c in GROUPS["methods"]] + [
        "synthetic/NAE_R10_FPN.yaml"  # NAE_R10 is in both groups: once
    ]
    configs = unique_configs(GROUPS)
    assert [c for c in configs if not os.path.isfile(os.path.join(REPO, "configs", c))] == []


def test_chart_with_a_config_not_run(tmp_path):
    # four panels: two rows of three, two axes left empty; B has no finished run
    groups = {"g1": [("A", "a.yaml"), ("B", "b.yaml")], "g2": [("A", "a.yaml")]}
    groups.update(g3=[("B", "b.yaml")], g4=[("A", "a.yaml")])
    results = {"a.yaml": [_result(10.0), _result(12.0)], "b.yaml": [{}]}
    path = tmp_path / "chart.png"
    plot(groups, results, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_device_from_the_run_config(tmp_path):
    assert run_device(str(tmp_path)) == "cpu"  # no config.yaml
    (tmp_path / "config.yaml").write_text("MODEL:\n  DEVICE: cpu\n  META_ARCHITECTURE: X\n")
    assert run_device(str(tmp_path)) == "cpu"
