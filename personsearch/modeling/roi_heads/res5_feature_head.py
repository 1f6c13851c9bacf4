"""The C4 RoI feature extractor: res5 on pooled res4 RoI maps, then global pooling."""

from typing import Dict

import torch
from torch import nn


class Res5FeatureHead(nn.Module):
    """Runs res5 on RoIAlign'ed res4 maps and globally pools its input and output.

    Person-search heads read both: NAE/SeqNet project the pooled res4 input (1024-d for R50) and the
    pooled res5 output (2048-d) into their embedding. The official NAE/SeqNet code pools with *max*
    (its comments say average); the OIM Caffe model averages.
    """

    def __init__(self, res5: nn.Module, res4_channels: int, res5_channels: int, pool: str = "max"):
        """
        Args:
            res5: the res5 stage (stride 2).
            res4_channels, res5_channels: input and output channels of ``res5``.
            pool: "max" or "avg" global pooling.
        """
        super().__init__()
        if pool not in ("max", "avg"):
            raise ValueError(f"MODEL.ROI_BOX_HEAD.GLOBAL_POOL must be 'max' or 'avg', got {pool!r}")
        self.res5 = res5
        self.pool = pool
        # pooled vectors (R, C) and the maps they are pooled from (R, C, s, s)
        self.output_channels = {
            "res4": res4_channels,
            "res5": res5_channels,
            "res4_map": res4_channels,
            "res5_map": res5_channels,
        }
        # which pooled vector each map is globally pooled into (the maps' vector counterparts)
        self.pooled_of = {"res4_map": "res4", "res5_map": "res5"}
        # the RoIAlign map the head reads (what UG's variance head looks at by default)
        self.input_map = "res4_map"

    def _global_pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == "max":
            return x.amax(dim=(2, 3))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            x: (R, C4, S, S) RoIAlign'ed res4 features (S = 14 in the reference setting).

        Returns:
            ``{"res4": (R, C4), "res5": (R, C5), "res4_map": (R, C4, S, S) (the input itself),
            "res5_map": (R, C5, ceil(S/2), ceil(S/2))}``.
        """
        y = self.res5(x)
        return {
            "res4": self._global_pool(x),
            "res5": self._global_pool(y),
            "res4_map": x,
            "res5_map": y,
        }
