"""The differentiable one-hot operator: hard classes forward, soft gradients backward."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def differentiable_one_hot(logits: torch.Tensor, temperature: float = 1.0, gumbel: bool = False,
                           hard: bool = True) -> torch.Tensor:
    """Turn class logits ``[B, K, ...]`` into a one-hot anatomical image along dim 1.

    Forward: the exact one-hot of the arg-max (of Gumbel-perturbed logits when ``gumbel``), so no contrast
    information leaks through soft probabilities. Backward: the gradient of the softmax at ``temperature``
    (straight-through estimator). ``hard=False`` returns the softmax itself (the "soft anatomy" ablation).
    """
    if gumbel:
        uniform = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
        logits = logits - torch.log(-torch.log(uniform))
    soft = F.softmax(logits / temperature, dim=1)
    if not hard:
        return soft
    # max(...).indices, not argmax: the same first-maximum index, ten times faster on CPU along dim 1
    index = soft.max(dim=1, keepdim=True).indices
    one_hot = torch.zeros_like(soft).scatter_(1, index, 1.0)
    return one_hot - soft.detach() + soft
