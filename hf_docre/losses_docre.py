"""Losses and decoding for DocRE heads.

Loaded through ``trust_remote_code`` (flat sibling, torch only).

All functions take `logits` and `labels` of shape [N, R] (N pairs, R relations with column 0 the NA/TH class) and
return one value per pair, so callers choose how to reduce (mean over a batch, or a sum normalised by the number of
pairs across gradient-accumulation steps).
"""

import torch
import torch.nn.functional as F

# Logit given to padded pairs: no relation column can beat column 0 (=0), and sigmoid() of it is 0.
PAD_RELATION_LOGIT = -1e4


def adaptive_thresholding_loss(logits, labels):
    r"""Adaptive-thresholding loss of ATLOP (Zhou et al. 2021, Sec. 4), per pair.

    .. math::
        L_1 = -\sum_{r \in P_T} \log \frac{\exp(\mathrm{logit}_r)}{\sum_{r' \in P_T \cup \{TH\}} \exp(\mathrm{logit}_{r'})},
        \quad
        L_2 = -\log \frac{\exp(\mathrm{logit}_{TH})}{\sum_{r' \in N_T \cup \{TH\}} \exp(\mathrm{logit}_{r'})}

    Args:
        logits: [N, R] float, column 0 is the TH class.
        labels: [N, R] multi-hot; column 0 is ignored (a pair with no positive relation has an empty P_T).
    Returns:
        [N] loss `L_1 + L_2` of each pair.
    """
    labels = labels.to(logits.dtype)
    positive = labels.clone()
    positive[:, 0] = 0.0
    threshold = torch.zeros_like(positive)
    threshold[:, 0] = 1.0

    # L1: softmax over the positive classes and TH; the sum runs over the positives only.
    keep_positive = (positive + threshold) > 0
    log_prob_positive = torch.log_softmax(logits.masked_fill(~keep_positive, float("-inf")), dim=-1)
    loss_positive = -torch.where(positive > 0, log_prob_positive, torch.zeros_like(log_prob_positive)).sum(-1)

    # L2: softmax over the negative classes and TH; the TH class is the target.
    keep_negative = positive == 0  # negatives and TH
    log_prob_negative = torch.log_softmax(logits.masked_fill(~keep_negative, float("-inf")), dim=-1)
    loss_threshold = -log_prob_negative[:, 0]
    return loss_positive + loss_threshold


def binary_relation_loss(logits, labels):
    """Binary cross-entropy over the relation columns (1..R-1), summed over relations, per pair.

    The BERT baseline of ATLOP/Wang et al.: each relation is an independent yes/no decision and a global threshold
    is tuned on dev data. Column 0 (NA) is not trained.
    """
    labels = labels.to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits[:, 1:], labels[:, 1:], reduction="none").sum(-1)


PAIR_LOSSES = {"atl": adaptive_thresholding_loss, "bce": binary_relation_loss}


def decode_relations(logits, loss="atl", global_threshold=0.5, max_relations_per_pair=4):
    """Turn logits into predictions.

    Args:
        logits: [..., R] float; column 0 is the TH class (`loss="atl"`), or unused (`loss="bce"`).
        loss: `"atl"` keeps relations whose logit beats the TH logit; `"bce"` keeps relations whose probability
            beats `global_threshold`.
        max_relations_per_pair: keep at most this many relations per pair (the highest logits); <= 0 keeps all.
    Returns:
        [..., R] bool; column 0 is True exactly where no relation is predicted (NA).
    """
    if loss == "atl":
        above = logits > logits[..., :1]
    else:
        above = torch.sigmoid(logits) > global_threshold
    above[..., 0] = False
    num_relations = logits.shape[-1] - 1
    if 0 < max_relations_per_pair < num_relations:
        kth_best = logits[..., 1:].topk(max_relations_per_pair, dim=-1).values[..., -1:]
        above &= logits >= kth_best
    above[..., 0] = ~above[..., 1:].any(-1)
    return above


def tune_global_threshold(logits, labels, candidates=None, max_relations_per_pair=4):
    """Pick the probability threshold that maximises relation F1 on dev data (for `loss="bce"`).

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
        predicted = decode_relations(logits, "bce", threshold, max_relations_per_pair)[:, 1:]
        true_positive = (predicted & gold).sum().item()
        precision = true_positive / max(predicted.sum().item(), 1)
        recall = true_positive / max(gold.sum().item(), 1)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        if f1 > best[1]:
            best = (threshold, f1)
    return best
