"""The groups of the synthetic model zoo: which configs are trained and tabulated together."""

import os
from typing import Dict, List, Optional, Sequence, Tuple

# (row label, config under configs/) per group; a config listed in several groups is run once
GROUPS: Dict[str, List[Tuple[str, str]]] = {
    "methods": [
        ("OIM", "synthetic/OIM_R10.yaml"),
        ("NAE", "synthetic/NAE_R10.yaml"),
        ("NAE+", "synthetic/NAE+_R10.yaml"),
        ("SeqNet", "synthetic/SeqNet_R10.yaml"),
        ("UGAS on NAE", "synthetic/UGAS-NAE_R10.yaml"),
        ("UGAS on SeqNet", "synthetic/UGAS_R10.yaml"),
    ],
    "fpn": [
        ("NAE, C4 (res5 head)", "synthetic/NAE_R10.yaml"),
        ("NAE, FPN (box head on p2-p5)", "synthetic/NAE_R10_FPN.yaml"),
    ],
    "ablation": [
        ("(a) SeqNet", "synthetic/SeqNet_R10.yaml"),  # = ablations/a_SeqNet.yaml (same model)
        ("(b) + SFM", "synthetic/ablations/b_SFM.yaml"),
        ("(c) + SFM + SD", "synthetic/ablations/c_SFM_SD.yaml"),
        ("(d) + UG", "synthetic/ablations/d_UG.yaml"),
        ("(e) + SFM + SD + UG", "synthetic/UGAS_R10.yaml"),
    ],
    "ug": [  # UG variants, alone on SeqNet and within the full UGAS
        ("SeqNet + UG (Gaussian, quality-guided: default)", "synthetic/ablations/d_UG.yaml"),
        ("SeqNet + UG (Gaussian, loss weighting only)", "synthetic/ablations/d_UG_fit.yaml"),
        ("SeqNet + UG (UAL: no sampling)", "synthetic/ablations/d_UG_ual.yaml"),
        ("SeqNet + UG (DSU)", "synthetic/ablations/d_UG_dsu.yaml"),
        (
            "SeqNet + UG (first reconstruction: collapses)",
            "synthetic/ablations/d_UG_collapsed.yaml",
        ),
        ("UGAS (quality-guided UG: default)", "synthetic/UGAS_R10.yaml"),
        ("UGAS (UG with loss weighting only)", "synthetic/ablations/e_UGAS_fit.yaml"),
    ],
    "sd": [  # SD variants
        ("SFM + SD (mutual: default)", "synthetic/ablations/c_SFM_SD.yaml"),
        ("SFM + SD (one-way deep -> shallow)", "synthetic/ablations/c_SFM_SD_oneway.yaml"),
        (
            "SFM + SD (gradient stopped at each branch)",
            "synthetic/ablations/c_SFM_SD_stopgrad.yaml",
        ),
        ("UGAS (mutual SD: default)", "synthetic/UGAS_R10.yaml"),
        ("UGAS (one-way SD)", "synthetic/ablations/e_UGAS_oneway.yaml"),
    ],
    "sfm": [  # SFM variants
        ("SFM (no attention: default)", "synthetic/ablations/b_SFM.yaml"),
        ("SFM with spatial + level attention", "synthetic/ablations/b_SFM_attention.yaml"),
    ],
    "fusion": [
        ("deep", "synthetic/ablations/fusion_deep.yaml"),
        ("shallow", "synthetic/ablations/fusion_shallow.yaml"),
        ("mean", "synthetic/ablations/fusion_mean.yaml"),
        ("concat", "synthetic/ablations/b_SFM.yaml"),  # FUSION concat: the default
        ("deep + SD", "synthetic/ablations/fusion_deep_SD.yaml"),
        ("shallow + SD", "synthetic/ablations/fusion_shallow_SD.yaml"),
        ("mean + SD", "synthetic/ablations/fusion_mean_SD.yaml"),
        ("concat + SD", "synthetic/ablations/c_SFM_SD.yaml"),
    ],
    "nae": [  # the current UGAS on the NAE head (NAE itself: the methods group)
        ("UGAS on NAE", "synthetic/UGAS-NAE_R10.yaml"),
    ],
}


def select_groups(
    names: Sequence[str], configs: Optional[Sequence[str]] = None
) -> Dict[str, List[Tuple[str, str]]]:
    """The groups to run and tabulate.

    Args:
        names: Names of :data:`GROUPS`.
        configs: Configs (paths under ``configs/``) to run instead of the named groups; if given,
            they form a single group ``"configs"`` whose rows are labelled with the file names.

    Returns:
        ``{group name: [(row label, config), ...]}`` in table order.
    """
    if configs:
        return {"configs": [(os.path.splitext(os.path.basename(c))[0], c) for c in configs]}
    return {g: GROUPS[g] for g in names}


def unique_configs(groups: Dict[str, List[Tuple[str, str]]]) -> List[str]:
    """Every config of the groups once, in order of first appearance."""
    return list(dict.fromkeys(c for rows in groups.values() for _, c in rows))
