import math

import pytest
import torch

from hf_docre import adaptive_thresholding_loss, binary_relation_loss, decode_relations
from hf_docre.layers_docre import GroupBilinear


def paper_atl(logits, positives):
    """ATLOP Sec. 4 written out with scalars: L1 over positives vs TH, L2 for TH vs negatives."""
    num = len(logits)
    negatives = [r for r in range(1, num) if r not in positives]
    loss = 0.0
    for r in positives:
        denominator = sum(math.exp(logits[q]) for q in positives + [0])
        loss -= math.log(math.exp(logits[r]) / denominator)
    denominator = sum(math.exp(logits[q]) for q in negatives + [0])
    loss -= math.log(math.exp(logits[0]) / denominator)
    return loss


CASES = [
    # (logits with TH at 0, positive relation columns)
    ([0.0, 1.0, -2.0, 0.5], [1]),
    ([0.3, -1.0, 2.0, 0.1], [1, 3]),  # a positive below TH, one above
    ([1.0, -1.0, 0.5, 3.0], []),  # no relation: only L2
    ([-0.5, 2.0, 1.5, 1.0], [1, 2, 3]),  # every relation positive: L2 is -log(1) = 0
]


@pytest.mark.parametrize("logits, positives", CASES)
def test_adaptive_thresholding_loss_equals_paper_formula(logits, positives):
    labels = torch.zeros(1, len(logits))
    labels[0, positives] = 1.0
    if not positives:
        labels[0, 0] = 1.0  # NA column set, as the collator does; it must not count as a positive
    got = adaptive_thresholding_loss(torch.tensor([logits], dtype=torch.float64), labels)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(paper_atl(logits, positives), abs=1e-9)


def test_adaptive_thresholding_loss_batch_and_gradient():
    logits = torch.tensor([c[0] for c in CASES], dtype=torch.float64, requires_grad=True)
    labels = torch.zeros(len(CASES), 4)
    for i, (_, positives) in enumerate(CASES):
        labels[i, positives] = 1.0
    loss = adaptive_thresholding_loss(logits, labels)
    expected = [paper_atl(l, p) for l, p in CASES]
    assert loss.tolist() == pytest.approx(expected, abs=1e-9)
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # Raising a positive's logit lowers the loss; raising a negative's logit raises it.
    assert logits.grad[0, 1] < 0 and logits.grad[0, 2] > 0


def test_binary_relation_loss_matches_hand_computation():
    logits = torch.tensor([[5.0, 0.0, 2.0, -1.0]])
    labels = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    sigmoid = lambda x: 1 / (1 + math.exp(-x))
    expected = -math.log(sigmoid(0.0)) - math.log(1 - sigmoid(2.0)) - math.log(sigmoid(-1.0))
    assert binary_relation_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_decode_adaptive_threshold_and_top_k():
    logits = torch.tensor(
        [
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, -1.0],  # five above TH: keep the best k
            [0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0],  # none above TH: NA
            [1.0, 1.0, 1.5, 0.0, 0.0, 0.0, 0.0],  # tie with TH is not a relation
        ]
    )
    predicted = decode_relations(logits, max_relations_per_pair=4)
    assert predicted[0].tolist() == [False, False, True, True, True, True, False]
    assert predicted[1].tolist() == [True] + [False] * 6
    assert predicted[2].tolist() == [False, False, True, False, False, False, False]
    unlimited = decode_relations(logits, max_relations_per_pair=0)
    assert unlimited[0, 1:6].all()


def test_decode_global_threshold():
    logits = torch.tensor([[9.0, 0.5, -0.5, 2.0]])  # column 0 is not a relation under BCE
    predicted = decode_relations(logits, loss="bce", global_threshold=0.6, max_relations_per_pair=0)
    assert predicted.tolist() == [[False, True, False, True]]
    predicted = decode_relations(logits, loss="bce", global_threshold=0.95)
    assert predicted.tolist() == [[True, False, False, False]]


def naive_group_bilinear(head, tail, weight, bias, block_size):
    """ATLOP's formulation: the full [N, emb_size * block_size] outer product, then a linear layer."""
    n, emb = head.shape
    groups = emb // block_size
    outer = (head.view(n, groups, block_size, 1) * tail.view(n, groups, 1, block_size)).view(n, emb * block_size)
    return outer @ weight.t() + bias


def test_group_bilinear_matches_naive_forward_and_backward():
    torch.manual_seed(0)
    layer = GroupBilinear(emb_size=32, block_size=8, num_labels=5).double()
    head = torch.randn(7, 32, dtype=torch.float64, requires_grad=True)
    tail = torch.randn(7, 32, dtype=torch.float64, requires_grad=True)
    out = layer(head, tail)
    reference = naive_group_bilinear(head, tail, layer.weight, layer.bias, 8)
    assert torch.allclose(out, reference, atol=1e-10)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (head, tail, layer.weight, layer.bias), grad)
    expected = torch.autograd.grad(reference, (head, tail, layer.weight, layer.bias), grad)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, atol=1e-10)
    assert torch.autograd.gradcheck(lambda h, t: layer(h, t), (head[:3], tail[:3]))


@pytest.mark.parametrize("chunk_elements", [None, 64 * 37])
def test_group_bilinear_fp32_on_a_long_pair_list_matches_float64(monkeypatch, chunk_elements):
    """ATLOP-shaped groups (block 8 here) over 3,001 pairs, with the default chunks and with chunks of 37 pairs that
    do not divide the list: forward and every gradient within 1e-5 relative of the float64 naive form."""
    from hf_docre import layers_docre

    if chunk_elements is not None:
        monkeypatch.setattr(layers_docre, "GROUP_BILINEAR_CHUNK_ELEMENTS", chunk_elements)
        assert len(layers_docre._chunks(3001, 8)) == 82
    torch.manual_seed(0)
    layer = GroupBilinear(emb_size=64, block_size=8, num_labels=97)
    head = torch.randn(3001, 64, requires_grad=True)
    tail = torch.randn(3001, 64, requires_grad=True)
    grad = torch.randn(3001, 97)
    out = layer(head, tail)
    got = torch.autograd.grad(out, (head, tail, layer.weight, layer.bias), grad)
    params64 = [t.detach().double().requires_grad_() for t in (head, tail, layer.weight, layer.bias)]
    reference = naive_group_bilinear(params64[0], params64[1], params64[2], params64[3], 8)
    expected = torch.autograd.grad(reference, params64, grad.double())
    torch.testing.assert_close(out.double(), reference, rtol=1e-5, atol=1e-5 * reference.abs().max().item())
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.double(), e, rtol=1e-5, atol=1e-5 * e.abs().max().item())


@pytest.mark.parametrize("how", ["bf16 inputs", "autocast"])
def test_group_bilinear_bf16_matches_float64_within_bf16_precision(monkeypatch, how):
    from hf_docre import layers_docre

    monkeypatch.setattr(layers_docre, "GROUP_BILINEAR_CHUNK_ELEMENTS", 64 * 50)
    torch.manual_seed(0)
    layer = GroupBilinear(emb_size=64, block_size=8, num_labels=13)
    head, tail = torch.randn(500, 64), torch.randn(500, 64)
    grad = torch.randn(500, 13)
    if how == "bf16 inputs":
        layer = layer.to(torch.bfloat16)
        head, tail, grad = head.bfloat16(), tail.bfloat16(), grad.bfloat16()
    head.requires_grad_(), tail.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=how == "autocast"):
        out = layer(head, tail)
    assert out.dtype == torch.bfloat16
    got = torch.autograd.grad(out, (head, tail, layer.weight, layer.bias), grad)
    assert [g.dtype for g in got] == [t.dtype for t in (head, tail, layer.weight, layer.bias)]
    params64 = [t.detach().double().requires_grad_() for t in (head, tail, layer.weight, layer.bias)]
    reference = naive_group_bilinear(params64[0], params64[1], params64[2], params64[3], 8)
    expected = torch.autograd.grad(reference, params64, grad.double())
    # bf16 keeps 8 bits of mantissa: a sum of 64 * 8 products is good to about 1% of its scale.
    for value, want in zip((out, *got), (reference, *expected)):
        error = (value.double() - want).abs().max() / want.abs().max()
        assert error < 2e-2, error


def test_group_bilinear_empty_input():
    layer = GroupBilinear(emb_size=16, block_size=4, num_labels=3)
    assert layer(torch.zeros(0, 16), torch.zeros(0, 16)).shape == (0, 3)


def test_tune_global_threshold_picks_the_best_f1():
    from hf_docre import tune_global_threshold

    # Probabilities 0.35 (gold) and 0.25 (not gold): any threshold in [0.25, 0.35) is perfect.
    logit = lambda p: math.log(p / (1 - p))
    logits = torch.tensor([[0.0, logit(0.35), logit(0.25)], [0.0, logit(0.05), logit(0.6)], [9.0, 9.0, 9.0]])
    labels = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-100.0, -100.0, -100.0]])
    threshold, f1 = tune_global_threshold(logits, labels)
    assert threshold == 0.3 and f1 == 1.0
    threshold, f1 = tune_global_threshold(logits, labels, candidates=[0.5, 0.7])
    assert threshold == 0.5 and f1 == pytest.approx(2 / 3)


def test_decode_two_step_and_scores():
    from hf_docre.decoding_docre import relation_scores

    # Column 0 is step 1's no-relation logit: pair 0 accepted (-2 < 0), pair 1 rejected (+1).
    logits = torch.tensor([[-2.0, 0.5, -3.0, 1.5], [1.0, 4.0, 3.0, -1.0]])
    predicted = decode_relations(logits, "two_step", global_threshold=0.7, max_relations_per_pair=0)
    # Accepted pair: relations above 0.7 (sigmoid 0.5 = 0.62 no, sigmoid 1.5 = 0.82 yes); rejected pair: nothing.
    assert predicted.tolist() == [[False, False, False, True], [True, False, False, False]]
    # The best relation is kept even when none passes the threshold.
    assert decode_relations(logits, "two_step", 0.99, 0)[0].tolist() == [False, False, False, True]
    scores = relation_scores(logits, "two_step")
    assert scores[0, 3].item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item() * torch.sigmoid(torch.tensor(1.5)).item())
    assert torch.equal(relation_scores(logits, "afl"), torch.sigmoid(logits - logits[:, :1]))
    assert torch.equal(relation_scores(logits, "bce"), torch.sigmoid(logits))
    with pytest.raises(ValueError, match="unknown decoding"):
        decode_relations(logits, "nope")
