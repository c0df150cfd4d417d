"""Losses of the DocRE pair heads (decoding is in `decoding_docre.py`).

Loaded through ``trust_remote_code`` (flat sibling, torch only).

All functions take `logits` and `labels` of shape [N, R] (N pairs, R relations with column 0 the NA/TH class) and
return one value per pair, so callers choose how to reduce (mean over a batch, or a sum normalised by the number of
pairs across gradient-accumulation steps).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# Logit given to padded pairs: no relation column can beat column 0 (=0), and sigmoid() of it is 0.
PAD_RELATION_LOGIT = -1e4


def adaptive_thresholding_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
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


def binary_relation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the relation columns (1..R-1), summed over relations, per pair.

    The BERT baseline of ATLOP/Wang et al.: each relation is an independent yes/no decision and a global threshold
    is tuned on dev data. Column 0 (NA) is not trained.
    """
    labels = labels.to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits[:, 1:], labels[:, 1:], reduction="none").sum(-1)


def adaptive_focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 0.5, positive_weight: str = "paper") -> torch.Tensor:
    r"""Adaptive focal loss of KD-DocRE (Tan et al. 2022, Eq. 9-11), per pair.

    Each positive relation is ranked against TH on its own, :math:`P(r) = \sigma(l_r - l_{TH})` (Eq. 9); TH is ranked
    against the negatives, :math:`P(TH) = \mathrm{softmax}_{N_T \cup \{TH\}}(l)_{TH}` (Eq. 10); and

    .. math::
        L = -\sum_{r \in P_T} w_r \log P(r) - \log P(TH)

    which is Eq. 11 with the sign that makes it a loss. `positive_weight="paper"` uses the focal weight
    :math:`w_r = (1 - P(r))^\gamma`; `"released_code"` uses :math:`w_r = 1 + (1 - P(r))^\gamma`, as the authors'
    released implementation does. Like the focal loss, the weight is part of the graph (not detached).

    Args:
        logits: [N, R] float, column 0 is the TH class.
        labels: [N, R] multi-hot; column 0 is ignored.
        gamma: the focusing parameter γ (paper: 0.5; γ = 0 with `"paper"` gives a pairwise ATL).
    Returns:
        [N] loss of each pair.
    """
    if positive_weight not in ("paper", "released_code"):
        raise ValueError(f"positive_weight must be 'paper' or 'released_code', got {positive_weight!r}")
    labels = labels.to(logits.dtype)
    positive = labels.clone()
    positive[:, 0] = 0.0
    margin = logits - logits[:, :1]
    log_prob = F.logsigmoid(margin)  # log P(r), Eq. 9
    # (1 - P(r))^gamma = exp(gamma * log sigmoid(-margin)): the same value, but finite with a finite gradient when
    # P(r) saturates at 1 (pow(1 - P, gamma < 1) has an infinite derivative at 0 and gives NaN gradients).
    weight = torch.exp(gamma * F.logsigmoid(-margin))
    if positive_weight == "released_code":
        weight = 1.0 + weight
    loss_positive = -(weight * log_prob * positive).sum(-1)
    keep_negative = positive == 0  # negatives and TH
    log_prob_threshold = torch.log_softmax(logits.masked_fill(~keep_negative, float("-inf")), dim=-1)[:, 0]  # Eq. 10
    return loss_positive - log_prob_threshold


def binary_loss_with_na(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """DSDocRE's fine-tuning loss (released code): binary cross-entropy over every column, the NA column 0
    included (target 1 for pairs with no relation), averaged over the columns. [N, R] x [N, R] -> [N]."""
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(-1)


PAIR_LOSSES = {"atl": adaptive_thresholding_loss, "bce": binary_relation_loss, "afl": adaptive_focal_loss,
               "bce_na": binary_loss_with_na}

# How the logits trained by each loss are decoded (`decoding_docre.decode_relations`); a head may decode otherwise
# (`PairHead.decoding`: two-step).
LOSS_DECODING = {"atl": "threshold_class", "afl": "threshold_class", "bce": "global_threshold", "bce_na": "threshold_class"}


def two_step_loss(logits: torch.Tensor, labels: torch.Tensor, negative_sampling_ratio: float = 3.0, sample: bool = True) -> torch.Tensor:
    """Loss of Wang et al.'s two-step model, per pair.

    Column 0 of `logits` is step 1's *no-relation* logit (-z, where sigmoid(z) = P(some relation)); columns 1..R-1
    are step 2's relation logits. Step 1 is binary cross-entropy on "has a relation", over every related pair and
    a random sample of NA pairs, `negative_sampling_ratio` NA pairs per related pair of the batch (at least that
    many when the batch has no related pair); step 2 is binary cross-entropy over the relation types, on related
    pairs only. With `sample=False` (evaluation) step 1 uses every pair.

    Returns:
        [N] loss of each pair (0 for NA pairs left out of the sample).
    """
    labels = labels.to(logits.dtype)
    related = labels[:, 1:].sum(-1) > 0
    exists_logit = -logits[:, 0]
    step1 = F.binary_cross_entropy_with_logits(exists_logit, related.to(logits.dtype), reduction="none")
    if sample:
        negatives = (~related).nonzero().squeeze(-1)
        keep = int(negative_sampling_ratio * max(int(related.sum()), 1))
        chosen = negatives[torch.randperm(len(negatives), device=negatives.device)[:keep]]
        in_sample = related.clone()
        in_sample[chosen] = True
        step1 = step1 * in_sample.to(logits.dtype)
    step2 = F.binary_cross_entropy_with_logits(logits[:, 1:], labels[:, 1:], reduction="none").sum(-1)
    return step1 + step2 * related.to(logits.dtype)


def relation_loss_fn(config, training: bool = True) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The per-pair loss `f(logits [N, R], labels [N, R]) -> [N]` of `config.loss` (`PAIR_LOSSES`); a pair head
    may train otherwise (`PairHead.relation_loss`: two-step)."""
    if config.loss == "afl":
        gamma = config.focal_gamma
        weight = config.focal_positive_weight
        return lambda logits, labels: adaptive_focal_loss(logits, labels, gamma, weight)
    return PAIR_LOSSES[config.loss]


def distillation_pair_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Knowledge-distillation loss of each pair (KD-DocRE Eq. 12): `"mse"` = mean over relations of
    (student - teacher)^2, so a sum over pairs / pairs is the MSE over all logits; `"kl"` = KL(softmax(teacher) ||
    softmax(student)) over the relation columns. [N, R] x [N, R] -> [N]."""
    teacher_logits = teacher_logits.to(student_logits.dtype)
    if kind == "mse":
        return (student_logits - teacher_logits).pow(2).mean(-1)
    return F.kl_div(
        torch.log_softmax(student_logits, -1), torch.log_softmax(teacher_logits, -1), log_target=True, reduction="none"
    ).sum(-1)


def labelled_pair_loss(
    config, logits: torch.Tensor, labels: torch.Tensor, training: bool = True, teacher_logits: torch.Tensor | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss of each pair, as the model's forward and any external reduction compute it.

    Args:
        logits: [N, R] the scored pairs' logits. labels: [N, R] multi-hot, rows of -100 for unlabelled pairs.
        teacher_logits: [N, R], *optional*: adds the weighted distillation loss (`config.distillation_loss`).
        loss_fn: the per-pair relation loss (the pair head's `relation_loss`); default `relation_loss_fn(config)`.
    Returns:
        (pair_loss [N] with 0 for unlabelled pairs (distillation still counts), distillation [N] or None)
    """
    labeled = (labels[:, 0] != -100).to(logits.dtype)
    loss_fn = loss_fn or relation_loss_fn(config, training)
    pair_loss = loss_fn(logits, labels.clamp(min=0).to(logits.dtype)) * labeled
    distillation = None
    if teacher_logits is not None:
        distillation = config.distillation_weight * distillation_pair_loss(logits, teacher_logits, config.distillation_loss)
        pair_loss = pair_loss + distillation
    return pair_loss, distillation


def reduce_pair_loss(pair_loss: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
    """The batch loss from the per-pair loss [B, P] (0 for padding and unscored pairs) and labels [B, P, R].

    Without `num_items_in_batch`: the mean over this batch's labelled pairs. Under the stock Trainer it is the
    number of label entries that are not -100 over every micro-batch of the optimiser step and every device, i.e.
    (labelled pairs) x R: the sum is divided by the labelled pairs of the whole step, so gradient accumulation and
    DDP give the gradient of the mean over every pair the step saw.
    """
    if num_items_in_batch is None:
        num_pairs = (labels[..., 0] != -100).sum().clamp(min=1)
    else:
        num_pairs = num_items_in_batch / labels.shape[-1]
        if torch.is_tensor(num_pairs):
            num_pairs = num_pairs.to(pair_loss.device)
    return pair_loss.sum() / num_pairs
