"""SFM with attention: where in the box and which shallow level the shallow embedding looks at."""

from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import nn

from .registry import SFM_REGISTRY
from .shallow_fusion import ShallowFusionModule


@SFM_REGISTRY.register()
class AttentionShallowFusionModule(ShallowFusionModule):
    """:class:`ShallowFusionModule` with attention before pooling (the poster's "visualization of
    attention weights"; docs/METHODS.md, "SFM").

    * **spatial** (``SFM.SPATIAL_ATTENTION``): per level, a 1x1 convolution of the level head's
      map gives a gate ``a = 2 sigmoid(conv(x))`` in (0, 2) per position; the level vector is the
      global max of ``a * x``, so background and occluder positions can be suppressed;
    * **level** (``SFM.LEVEL_ATTENTION``): per box, a linear layer over the concatenated level
      vectors gives softmax weights over the L levels; level l's vector is scaled by ``L w_l``, so
      a small person can lean on res2 and a large one on res3.

    Both start as the identity (zero-initialised: a = 1, w = 1/L), so at initialisation this module
    computes exactly what :class:`ShallowFusionModule` computes. :meth:`embed` also returns
    ``"attention"`` (per level, (R, 1, S, S) gates) and ``"level_weights"`` ((R, L)), drawn by
    ``tools/visualize_detections.py``
    (:func:`personsearch.visualization.attention.sfm_attention_maps`).
    """

    @configurable
    def __init__(self, *, spatial_attention: bool = True, level_attention: bool = True, **kwargs):
        """
        Args:
            spatial_attention: gate each level's map before pooling.
            level_attention: weight the levels per box.
            kwargs: see :class:`ShallowFusionModule`.
        """
        super().__init__(**kwargs)
        conv_dim = self.level_channels // len(self.in_features)
        self.spatial = None
        if spatial_attention:
            self.spatial = nn.ModuleList(nn.Conv2d(conv_dim, 1, 1) for _ in self.in_features)
            for conv in self.spatial:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
        self.level_fc = None
        if level_attention:
            self.level_fc = nn.Linear(self.level_channels, len(self.in_features))
            nn.init.zeros_(self.level_fc.weight)
            nn.init.zeros_(self.level_fc.bias)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec], deep_dim: int):
        ret = super().from_config(cfg, input_shape, deep_dim)
        ret["spatial_attention"] = cfg.MODEL.UGAS.SFM.SPATIAL_ATTENTION
        ret["level_attention"] = cfg.MODEL.UGAS.SFM.LEVEL_ATTENTION
        return ret

    def embed(self, pooled: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """:meth:`ShallowFusionModule.embed` with attention; also returns ``"attention"`` (list
        of (R, 1, S, S), empty without spatial attention) and ``"level_weights"`` ((R, L), ones
        without level attention)."""
        maps = self.level_maps(pooled)
        gates = []
        if self.spatial is not None:
            gates = [2.0 * torch.sigmoid(conv(m)) for m, conv in zip(maps, self.spatial)]
            maps = [m * g for m, g in zip(maps, gates)]
        vectors = [m.amax(dim=(2, 3)) for m in maps]
        num_levels = len(vectors)
        if self.level_fc is not None:
            weights = num_levels * torch.softmax(self.level_fc(torch.cat(vectors, dim=1)), dim=1)
            vectors = [v * weights[:, i : i + 1] for i, v in enumerate(vectors)]
        else:
            weights = vectors[0].new_ones((vectors[0].shape[0], num_levels))
        levels = torch.cat(vectors, dim=1)
        return {
            "shallow": self.proj(levels),
            "levels": levels,
            "attention": gates,
            "level_weights": weights,
        }
