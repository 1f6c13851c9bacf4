"""Composes SFM, SD and UG onto the embedding path of a person-search RoI head."""

from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes
from detectron2.utils.events import get_event_storage
from torch import nn

from personsearch.layers import frozen_running_stats

from ..losses.oim import OIMLoss


class UGASEmbedding(nn.Module):
    """The UGAS extension of a RoI head's embedding path (any head: OIM, NAE, NAE+, SeqNet).

    Called by :meth:`PersonSearchROIHeads.reid_forward` after the base re-ID head with its outputs
    ``out``; it keeps them (so the detection score stays the base head's, on the deep branch) and
    adds:

    * ``deep_embeddings`` (the base unit embedding) and ``oim_features`` (what the main OIM loss
      is trained on: the base head's declared OIM features, or its embeddings);
    * with SFM: ``shallow_embeddings`` (unit s) and the fused embedding in ``embeddings`` /
      ``oim_features`` (``MODEL.UGAS.SFM.FUSION``); with an attention SFM also ``sfm_attention``
      and ``sfm_level_weights``;
    * with SD's ``STOP_BACKBONE_GRADIENT``, in training: ``deep_student`` / ``shallow_student``,
      the two branches recomputed from inputs detached from the shared trunk;
    * with a variance-predicting UG, in training (or at test with ``OUTPUT_VARIANCE``):
      ``log_var`` (R, D) of the final embedding, and at test ``uncertainty`` (R,).

    Losses (:meth:`losses`): the main OIM loss (UG decides how uncertainty guides it) and UG's own
    terms; with SFM ``loss_oim_deep`` and ``loss_oim_shallow`` (own lookup tables and queues,
    weights ``SFM.DEEP_LOSS_WEIGHT`` / ``SHALLOW_LOSS_WEIGHT``) and with SD ``loss_sd`` between
    their logits. All extra memories are buffers (saved, restored on resume) and are all-gathered
    under several processes like the main one.
    """

    def __init__(
        self,
        *,
        deep_dim: int,
        main_feature: str = "embeddings",
        sfm: Optional[nn.Module] = None,
        sd: Optional[nn.Module] = None,
        ug: Optional[nn.Module] = None,
        deep_loss: Optional[OIMLoss] = None,
        shallow_loss: Optional[OIMLoss] = None,
        ug_inputs: List[str] = (),
        output_variance: bool = False,
    ):
        """
        Args:
            deep_dim: D of the base head's embedding.
            main_feature: the base head's output OIM is trained on ("oim_features" or
                "embeddings").
            sfm, sd, ug: the modules (None: disabled). SD needs SFM.
            deep_loss, shallow_loss: the per-branch OIM losses (with SFM).
            ug_inputs: names of the RoI maps the variance head reads (with SFM it also reads
                SFM's level vectors).
            output_variance: run the variance head at inference and output ``uncertainty``.
        """
        super().__init__()
        if sd is not None and sfm is None:
            raise ValueError(
                "MODEL.UGAS.SD distils between the deep branch and SFM's shallow branch; "
                "it needs MODEL.UGAS.SFM.ENABLED True"
            )
        if sfm is not None and (deep_loss is None or shallow_loss is None):
            raise ValueError("SFM needs the per-branch OIM losses")
        self.deep_dim = deep_dim
        self.main_feature = main_feature
        self.sfm = sfm
        self.sd = sd
        self.ug = ug
        self.deep_loss = deep_loss
        self.shallow_loss = shallow_loss
        self.ug_inputs = list(ug_inputs)
        self.output_variance = output_variance

    @property
    def embed_dim(self) -> int:
        """D of the final (retrieval) embedding."""
        return self.sfm.embed_dim if self.sfm is not None else self.deep_dim

    @property
    def has_variance(self) -> bool:
        """Whether the model outputs a per-detection ``uncertainty`` at inference."""
        return self.output_variance and self.ug is not None and self.ug.has_variance

    def training_only_prefixes(self) -> List[str]:
        """State-dict prefixes (relative to this module) that inference never uses."""
        out = []
        if self.ug is not None and not self.has_variance:
            out.append("ug.")
        if self.sd is not None:
            out.append("sd.")
        if self.sfm is not None:
            out += ["deep_loss.", "shallow_loss."]
        return out

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled RoI maps of the embedding path, perturbed by UG in training (DSU) or
        unchanged."""
        if self.ug is None or not self.training:
            return x
        return self.ug.perturb(x)

    def forward(
        self,
        features: Dict[str, torch.Tensor],
        boxes: List[Boxes],
        roi_feats: Dict[str, torch.Tensor],
        out: Dict[str, torch.Tensor],
        reid_head: Optional[Callable] = None,
    ) -> Dict[str, torch.Tensor]:
        """Extend the base head's outputs ``out`` of the RoIs ``boxes`` (see the class doc).

        ``reid_head`` (the base re-ID head) is needed only to recompute SD's deep student.
        """
        res = dict(out)
        deep = out["embeddings"]
        res["deep_embeddings"] = deep
        res["deep_oim_features"] = out[self.main_feature]
        res["oim_features"] = out[self.main_feature]
        levels = None
        if self.sfm is not None:
            sf = self.sfm(features, boxes)
            levels = sf["levels"]
            res["shallow_embeddings"] = F.normalize(sf["shallow"], dim=1)
            fused = self.sfm.fuse(deep, sf["shallow"])
            res["embeddings"] = fused
            res["oim_features"] = fused
            if "attention" in sf:
                res["sfm_attention"] = sf["attention"]
                res["sfm_level_weights"] = sf["level_weights"]
            if self.training and self.sd is not None and self.sd.stop_backbone_gradient:
                with frozen_running_stats(self.sfm):
                    student = self.sfm.embed([p.detach() for p in sf["pooled"]])
                res["shallow_student"] = F.normalize(student["shallow"], dim=1)
                with frozen_running_stats(reid_head):
                    detached = {k: v.detach() for k, v in roi_feats.items()}
                    res["deep_student"] = reid_head(detached)[self.main_feature]
        if self.ug is not None and self.ug.has_variance and (self.training or self.output_variance):
            maps = [roi_feats[n] for n in self.ug_inputs]
            res["log_var"] = self.ug.log_variance(maps, levels)
            if not self.training:
                res["uncertainty"] = self.ug.uncertainty(res["log_var"])
        return res

    def losses(
        self,
        reid_out: Dict[str, torch.Tensor],
        pids: torch.Tensor,
        person: torch.Tensor,
        main_loss: OIMLoss,
        iou: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """UGAS's re-ID losses of the sampled RoIs.

        Args:
            reid_out: :meth:`forward`'s outputs for the sampled RoIs.
            pids: (R,) identity targets of the RoIs (see ``PersonSearchROIHeads.reid_targets``).
            person: (R,) bool, the foreground RoIs (the ones OIM sees).
            main_loss: the RoI head's OIM loss on the final embedding.
            iou: (R,) IoU of each RoI with its matched ground truth (None: unknown).
        """
        p = pids[person]
        feats = reid_out["oim_features"][person]
        fg_iou = iou[person] if iou is not None else None
        students = {}
        if self.sd is not None and "deep_student" in reid_out:
            # the students' logits see the memories before this batch's update, as the teachers'
            students = {
                "deep_student": self.deep_loss.logits(reid_out["deep_student"][person]),
                "shallow_student": self.shallow_loss.logits(reid_out["shallow_student"][person]),
            }
        if self.ug is not None:
            log_var = reid_out["log_var"][person] if self.ug.has_variance else None
            losses = self.ug.reid_loss(main_loss, feats, p, log_var, fg_iou)
        else:
            losses = {"loss_oim": main_loss(feats, p)}
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
                        **students,
                    )
                )
        return losses
