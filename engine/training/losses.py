"""Training objectives.

- `pair_infonce`: contrastive loss on the stage-1 vectors that retrieval ranks by (the CLS vectors,
  or the fused ones when the model is used beside a fixed pretrained descriptor). Each
  sketch's target over the batch's images mixes its own image (instance: the drawing shows this
  scene) and every image of its class (category); symmetric over sketch->image and image->sketch.
- `cross_triplet`: the MLAGT objective: triplet loss (L2 between L2-normalised cross-attended CLS
  rows) of a sketch with a positive image against the same sketch with a negative image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def mixed_targets(labels: torch.Tensor, instance: torch.Tensor, instance_weight: float) -> torch.Tensor:
    """(B, B) target distributions: row i puts `instance_weight` on column i (when pair i is an
    instance pair) and the rest spread evenly over columns of the same class."""
    same = (labels[:, None] == labels[None, :]).float()
    target = same / same.sum(dim=1, keepdim=True)
    w = instance_weight * instance.float()[:, None]
    return (1 - w) * target + w * torch.eye(len(labels), device=labels.device)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def pair_infonce(sketch: torch.Tensor, image: torch.Tensor, labels: torch.Tensor, instance: torch.Tensor,
                 temperature: float, instance_weight: float) -> torch.Tensor:
    """sketch[i] and image[i] form pair i (stage-1 vectors, cosine-scored); labels (B,) class ids;
    instance (B,) bool."""
    s, v = F.normalize(sketch, dim=-1), F.normalize(image, dim=-1)
    logits = s @ v.T / temperature
    target = mixed_targets(labels, instance, instance_weight)
    return 0.5 * (soft_cross_entropy(logits, target) + soft_cross_entropy(logits.T, target.T))


def hardest_negatives(sketch: torch.Tensor, image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """For each sketch, the index of the most similar image of another class (stage-1 cosine)."""
    with torch.no_grad():
        sim = F.normalize(sketch, dim=-1) @ F.normalize(image, dim=-1).T
        sim = sim.masked_fill(labels[:, None] == labels[None, :], float("-inf"))
        return sim.argmax(dim=1)


def triplet_distances(s_cls: torch.Tensor, i_cls: torch.Tensor) -> torch.Tensor:
    return (F.normalize(s_cls, dim=-1) - F.normalize(i_cls, dim=-1)).norm(dim=-1)


def cross_triplet(pos: tuple[torch.Tensor, torch.Tensor], neg: tuple[torch.Tensor, torch.Tensor],
                  margin: float) -> torch.Tensor:
    """pos/neg: (sketch CLS, image CLS) after cross attention for (sketch, positive) and (sketch, negative)."""
    return F.relu(triplet_distances(*pos) - triplet_distances(*neg) + margin).mean()
