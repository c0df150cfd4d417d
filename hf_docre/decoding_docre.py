"""Decoding of DocRE logits: predictions, relation scores, and the global threshold tuned on dev data.

Loaded through ``trust_remote_code`` (flat sibling, torch only).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_DECODINGS = {"atl": "threshold_class", "afl": "threshold_class", "bce_na": "threshold_class", "bce": "global_threshold"}


def decode_relations(logits: torch.Tensor, loss: str = "atl", global_threshold: float = 0.5, max_relations_per_pair: int = 4) -> torch.Tensor:
    """Turn logits into predictions.

    Args:
        logits: [..., R] float; column 0 is the TH class, step 1's no-relation logit (two-step), or unused (BCE).
        loss: the decoding (`config.decoding`), or a loss name that implies it: `"threshold_class"` (`"atl"`,
            `"afl"`) keeps relations whose logit beats column 0; `"global_threshold"` (`"bce"`) keeps relations whose
            probability beats `global_threshold`; `"two_step"` keeps, for pairs step 1 accepts (column 0 < 0, i.e.
            P(relation) > 0.5), the relations above `global_threshold` and at least the best one.
        max_relations_per_pair: keep at most this many relations per pair (the highest logits); <= 0 keeps all.
    Returns:
        [..., R] bool; column 0 is True exactly where no relation is predicted (NA).
    """
    decoding = _DECODINGS.get(loss, loss)
    if decoding == "threshold_class":
        above = logits > logits[..., :1]
    elif decoding == "global_threshold":
        above = torch.sigmoid(logits) > global_threshold
    elif decoding == "two_step":
        relation_logits = logits[..., 1:]
        best = relation_logits >= relation_logits.amax(-1, keepdim=True)
        chosen = (torch.sigmoid(relation_logits) > global_threshold) | best
        above = torch.cat([torch.zeros_like(chosen[..., :1]), chosen & (logits[..., :1] < 0)], dim=-1)
    else:
        raise ValueError(f"unknown decoding {loss!r}")
    return _keep_best(above, logits, max_relations_per_pair)


def _keep_best(above, values, max_relations_per_pair):
    """At most `max_relations_per_pair` of the relations in `above` per pair, those with the highest `values`
    (<= 0 keeps all); column 0 becomes True exactly where none is left (NA)."""
    above[..., 0] = False
    num_relations = values.shape[-1] - 1
    if 0 < max_relations_per_pair < num_relations:
        kth_best = values[..., 1:].topk(max_relations_per_pair, dim=-1).values[..., -1:]
        above &= values >= kth_best
    above[..., 0] = ~above[..., 1:].any(-1)
    return above


def select_by_score(scores: torch.Tensor, threshold: float, max_relations_per_pair: int = 4) -> torch.Tensor:
    """Predictions from relation scores ([..., R], column 0 ignored; see `relation_scores`): the relations whose
    score is above `threshold`, at most `max_relations_per_pair` per pair (the best; <= 0 keeps all). Returns
    [..., R] bool with column 0 True where no relation is kept, like `decode_relations`."""
    return _keep_best(scores > threshold, scores, max_relations_per_pair)


def relation_scores(logits: torch.Tensor, loss: str = "atl") -> torch.Tensor:
    """[..., R] probabilities of each relation (column 0 meaningless): sigmoid(l_r - l_TH) for a threshold class,
    sigmoid(l_r) for BCE, P(relation) * P(r) for two-step."""
    decoding = _DECODINGS.get(loss, loss)
    if decoding == "threshold_class":
        return torch.sigmoid(logits - logits[..., :1])
    if decoding == "two_step":
        return torch.sigmoid(-logits[..., :1]) * torch.sigmoid(logits)
    return torch.sigmoid(logits)


def tune_global_threshold(
    logits: torch.Tensor,
    labels: torch.Tensor,
    candidates: Sequence[float] | None = None,
    max_relations_per_pair: int = 4,
    decoding: str = "global_threshold",
) -> tuple[float, float]:
    """Pick the probability threshold that maximises relation F1 on dev data (BCE and two-step heads).

    The paper searches {0.1, 0.2, ..., 0.9}; pass `candidates` for a finer grid.

    Args:
        logits: [..., R] dev-set logits; labels: [..., R] multi-hot (column 0 = NA; rows with -100 are ignored).
    Returns:
        (best threshold, its F1 over (pair, relation) decisions).
    """
    if candidates is None:
        candidates = [round(0.1 * i, 1) for i in range(1, 10)]
    real = labels[..., 0] != -100
    logits, gold = logits[real], labels[real][:, 1:] > 0
    best = (candidates[0], -1.0)
    for threshold in candidates:
        predicted = decode_relations(logits, decoding, threshold, max_relations_per_pair)[:, 1:]
        true_positive = (predicted & gold).sum().item()
        precision = true_positive / max(predicted.sum().item(), 1)
        recall = true_positive / max(gold.sum().item(), 1)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        if f1 > best[1]:
            best = (threshold, f1)
    return best
