"""Composes SFM, SD and UG onto the embedding path of a person-search RoI head."""

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes
from detectron2.utils.events import get_event_storage
from torch import nn

from ..losses.oim import OIMLoss


class UGASEmbedding(nn.Module):
    """The UGAS extension of a RoI head's embedding path (any head: OIM, NAE, NAE+, SeqNet).

    Called by :meth:`PersonSearchROIHeads.reid_forward` after the base re-ID head with its outputs
    ``out``; it keeps them (so the detection score stays the base head's, on the deep branch) and
    adds:

    * with SFM: ``deep_embeddings`` (the base unit embedding), ``shallow_embeddings`` (unit s) and
      replaces ``embeddings`` / ``oim_features`` by the fused embedding (``MODEL.UGAS.SFM.FUSION``);
    * with UG, in training (or at test with ``OUTPUT_VARIANCE``): ``log_var`` (R, D) of the final
      embedding, and at test ``uncertainty`` (R,) = its mean.

    Losses (:meth:`losses`): ``loss_oim`` on the final embedding (with UG: on its samples, memories
    updated with the mean), ``loss_ug_kl``; with SFM ``loss_oim_deep`` and ``loss_oim_shallow``
    (own lookup tables and queues, weights ``SFM.DEEP_LOSS_WEIGHT`` / ``SHALLOW_LOSS_WEIGHT``) and
    with SD ``loss_sd`` between their logits. All extra memories are buffers (saved, restored on
    resume) and are all-gathered under several processes like the main one.
    """

    def __init__(
        self,
        *,
        deep_dim: int,
        sfm: Optional[nn.Module] = None,
        sd: Optional[nn.Module] = None,
        ug: Optional[nn.Module] = None,
        deep_loss: Optional[OIMLoss] = None,
        shallow_loss: Optional[OIMLoss] = None,
        ug_inputs: List[str] = (),
        ug_uses_shallow: bool = False,
        output_variance: bool = False,
    ):
        """
        Args:
            deep_dim: D of the base head's embedding.
            sfm, sd, ug: the modules (None: disabled). SD needs SFM.
            deep_loss, shallow_loss: the per-branch OIM losses (with SFM).
            ug_inputs: names of the pooled RoI features the variance head reads.
            ug_uses_shallow: the variance head also reads SFM's level vectors.
            output_variance: run the variance head at inference and output ``uncertainty``.
        """
        super().__init__()
        if sd is not None and sfm is None:
            raise ValueError(
                "MODEL.UGAS.SD distils the deep branch into SFM's shallow branch; "
                "it needs MODEL.UGAS.SFM.ENABLED True"
            )
        if sfm is not None and (deep_loss is None or shallow_loss is None):
            raise ValueError("SFM needs the per-branch OIM losses")
        self.deep_dim = deep_dim
        self.sfm = sfm
        self.sd = sd
        self.ug = ug
        self.deep_loss = deep_loss
        self.shallow_loss = shallow_loss
        self.ug_inputs = list(ug_inputs)
        self.ug_uses_shallow = ug_uses_shallow
        self.output_variance = output_variance

    @property
    def embed_dim(self) -> int:
        """D of the final (retrieval) embedding."""
        return self.sfm.embed_dim if self.sfm is not None else self.deep_dim

    def training_only_prefixes(self) -> List[str]:
        """State-dict prefixes (relative to this module) that inference never uses."""
        out = []
        if self.ug is not None and not self.output_variance:
            out.append("ug.")
        if self.sd is not None:
            out.append("sd.")
        if self.sfm is not None:
            out += ["deep_loss.", "shallow_loss."]
        return out

    def forward(
        self,
        features: Dict[str, torch.Tensor],
        boxes: List[Boxes],
        roi_feats: Dict[str, torch.Tensor],
        out: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        """Extend the base head's outputs ``out`` of the RoIs ``boxes`` (see the class doc)."""
        res = dict(out)
        deep = out["embeddings"]
        res["deep_embeddings"] = deep
        res["deep_oim_features"] = out.get("oim_features", deep)
        levels = None
        if self.sfm is not None:
            sf = self.sfm(features, boxes)
            levels = sf["levels"]
            res["shallow_embeddings"] = F.normalize(sf["shallow"], dim=1)
            fused = self.sfm.fuse(deep, sf["shallow"])
            res["embeddings"] = fused
            res["oim_features"] = fused
        if self.ug is not None and (self.training or self.output_variance):
            inputs = [roi_feats[n] for n in self.ug_inputs]
            if self.ug_uses_shallow:
                inputs.append(levels)
            res["log_var"] = self.ug.log_variance(torch.cat(inputs, dim=1))
            if not self.training:
                res["uncertainty"] = res["log_var"].mean(dim=1)
        return res

    def losses(
        self,
        reid_out: Dict[str, torch.Tensor],
        pids: torch.Tensor,
        person: torch.Tensor,
        main_loss: OIMLoss,
    ) -> Dict[str, torch.Tensor]:
        """UGAS's re-ID losses of the sampled RoIs.

        Args:
            reid_out: :meth:`forward`'s outputs for the sampled RoIs.
            pids: (R,) identity targets of the RoIs (see ``PersonSearchROIHeads.reid_targets``).
            person: (R,) bool, the foreground RoIs (the ones OIM sees).
            main_loss: the RoI head's OIM loss on the final embedding.
        """
        p = pids[person]
        mean = reid_out["oim_features"][person]
        losses = {}
        if self.ug is not None:
            log_var = reid_out["log_var"][person]
            samples = self.ug.sample(F.normalize(mean, dim=1), log_var)
            terms = [
                main_loss(z, p, memory_feats=mean, update_memory=(k == 0))
                for k, z in enumerate(samples)
            ]
            losses["loss_oim"] = torch.stack(terms).mean()
            losses["loss_ug_kl"] = self.ug.kl(log_var)
        else:
            losses["loss_oim"] = main_loss(mean, p)
        if self.sfm is not None:
            deep = reid_out["deep_oim_features"][person]
            shallow = reid_out["shallow_embeddings"][person]
            losses["loss_oim_deep"], z_deep = self.deep_loss(deep, p, return_logits=True)
            losses["loss_oim_shallow"], z_shallow = self.shallow_loss(
                shallow, p, return_logits=True
            )
            if self.sd is not None:
                iteration = get_event_storage().iter
                losses.update(
                    self.sd(
                        z_deep,
                        z_shallow,
                        reid_out["deep_embeddings"][person],
                        shallow,
                        p,
                        iteration,
                    )
                )
        return losses
