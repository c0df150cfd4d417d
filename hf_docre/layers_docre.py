"""Layers of the DocRE pair heads, and the attention function that gives localized context pooling its weights.

- `last_layer_eager_attention`: sdpa everywhere, eager (with weights) only in the encoder's last layer, and only
  for the rows asked for (registered with `transformers.AttentionInterface` as `LAST_LAYER_ATTENTION`).
- `GroupBilinear`: ATLOP's group bilinear without the [pairs, emb_size * block_size] outer-product tensor.
- `PairBilinear`: a full bilinear layer (Wang et al. 2019) that accepts any batch shape.
- `AxialPairAttention`: KD-DocRE's axial attention over the entity-pair table.

Loaded through ``trust_remote_code``: flat sibling, torch and transformers only.
"""

import math

import torch
from torch import nn
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

try:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
except ImportError:  # pragma: no cover - older layouts
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sdpa_attention_forward = ALL_ATTENTION_FUNCTIONS["sdpa"]

LAST_LAYER_ATTENTION = "docre_last_layer_eager"


def last_layer_eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention function for `transformers.AttentionInterface`.

    Every layer runs sdpa. When attention weights are requested, the encoder's last layer also returns softmax
    weights: for the query rows in `docre_attention_rows` ([B, Q] token positions) only, as [B, H, Q, L], or for
    every row ([B, H, L, L]) when no rows are given. Weights are taken before dropout, so each row is a
    distribution. With `docre_attention_layers=k`, the last k layers return weights. Modules without a `layer_idx`
    count as the last layer (correct, only slower).
    """
    wants_weights = kwargs.pop("output_attentions", False)
    rows = kwargs.pop("docre_attention_rows", None)
    last_layers = kwargs.pop("docre_attention_layers", 1)
    layer_idx = getattr(module, "layer_idx", None)
    num_layers = getattr(getattr(module, "config", None), "num_hidden_layers", None)
    is_last = layer_idx is None or num_layers is None or layer_idx >= num_layers - last_layers
    output, _ = sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    if not (wants_weights and is_last):
        return output, None

    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if key.shape[1] != query.shape[1]:  # grouped-query attention
        key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    mask = attention_mask
    if rows is not None:
        query = query.gather(2, rows[:, None, :, None].expand(-1, query.shape[1], -1, query.shape[-1]))
        if mask is not None and mask.shape[-2] != 1:
            mask = mask.gather(2, rows[:, None, :, None].expand(-1, mask.shape[1], -1, mask.shape[-1]))
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask[..., : key.shape[-2]]
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    return output, weights


AttentionInterface.register(LAST_LAYER_ATTENTION, last_layer_eager_attention)
AttentionMaskInterface.register(LAST_LAYER_ATTENTION, sdpa_mask)



def _compute_dtype(tensor):
    device_type = tensor.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return tensor.dtype


# Localized context pooling computes q for one chunk of head entities against all entities at a time: at most this

# Pairs per chunk are chosen so one chunk's outer product holds about this many elements (16 MB in fp32): big enough
# for efficient matrix products, small enough to stay in cache and never show up in peak memory.
GROUP_BILINEAR_CHUNK_ELEMENTS = 1 << 22


class _GroupBilinearFunction(torch.autograd.Function):
    """logits[n, r] = sum_g head[n, g, :] @ W[r, g] @ tail[n, g, :] + bias[r], one (pair chunk, group) at a time.

    The naive form builds the outer product [N, k * bs * bs] (ATLOP: 49,152 floats per pair) and autograd keeps it
    for the backward pass. Here each chunk's [n, bs * bs] outer product of one group is built, used and dropped, in
    forward and again in backward, so memory stays at one chunk's worth whatever the number of pairs.
    """

    @staticmethod
    def forward(ctx, head, tail, weight, bias, block_size):
        dtype = _compute_dtype(head)
        ctx.input_dtypes = (head.dtype, tail.dtype, weight.dtype, bias.dtype)
        with torch.autocast(head.device.type, enabled=False):
            head, tail, weight, bias = (t.to(dtype) for t in (head, tail, weight, bias))
            num_pairs, emb_size = head.shape
            num_groups = emb_size // block_size
            num_labels = weight.shape[0]
            head_g = head.view(num_pairs, num_groups, block_size)
            tail_g = tail.view(num_pairs, num_groups, block_size)
            weight_t = weight.view(num_labels, num_groups, block_size * block_size).permute(1, 2, 0)  # [k, bs*bs, R]
            logits = bias.expand(num_pairs, num_labels).clone()
            for rows in _chunks(num_pairs, block_size):
                out = logits[rows]
                for g in range(num_groups):
                    outer = head_g[rows, g, :, None] * tail_g[rows, g, None, :]
                    out.addmm_(outer.view(-1, block_size * block_size), weight_t[g])
        ctx.save_for_backward(head, tail, weight)
        ctx.block_size = block_size
        return logits

    @staticmethod
    def backward(ctx, grad_logits):
        head, tail, weight = ctx.saved_tensors
        block_size = ctx.block_size
        grad_logits = grad_logits.to(head.dtype)
        num_pairs, emb_size = head.shape
        num_groups = emb_size // block_size
        num_labels = weight.shape[0]
        head_g = head.view(num_pairs, num_groups, block_size)
        tail_g = tail.view(num_pairs, num_groups, block_size)
        weight_g = weight.view(num_labels, num_groups, block_size * block_size)
        need_head, need_tail, need_weight, need_bias = ctx.needs_input_grad[:4]
        grad_head = torch.empty_like(head_g) if need_head else None
        grad_tail = torch.empty_like(tail_g) if need_tail else None
        grad_weight = torch.zeros_like(weight_g) if need_weight else None
        for rows in _chunks(num_pairs, block_size):
            grad_rows = grad_logits[rows]
            for g in range(num_groups):
                h, t = head_g[rows, g], tail_g[rows, g]
                if need_head or need_tail:
                    # mixed[n, i, j] = sum_r grad[n, r] * W[r, g, i, j]
                    mixed = (grad_rows @ weight_g[:, g]).view(-1, block_size, block_size)
                    if need_head:
                        grad_head[rows, g] = torch.matmul(mixed, t[:, :, None]).squeeze(-1)
                    if need_tail:
                        grad_tail[rows, g] = torch.matmul(h[:, None, :], mixed).squeeze(1)
                if need_weight:
                    outer = (h[:, :, None] * t[:, None, :]).view(-1, block_size * block_size)
                    grad_weight[:, g].addmm_(grad_rows.t(), outer)
        grad_bias = grad_logits.sum(0) if need_bias else None
        head_dtype, tail_dtype, weight_dtype, bias_dtype = ctx.input_dtypes

        def cast(t, d, shape):
            return None if t is None else t.reshape(shape).to(d)

        return (
            cast(grad_head, head_dtype, (num_pairs, emb_size)),
            cast(grad_tail, tail_dtype, (num_pairs, emb_size)),
            cast(grad_weight, weight_dtype, (num_labels, -1)),
            cast(grad_bias, bias_dtype, (num_labels,)),
            None,
        )


def _chunks(num_pairs, block_size):
    step = max(1, GROUP_BILINEAR_CHUNK_ELEMENTS // (block_size * block_size))
    return [slice(start, start + step) for start in range(0, num_pairs, step)]


class GroupBilinear(nn.Module):
    """Group bilinear classifier (Zheng et al. 2019; ATLOP Eq. 5).

    `weight` has the layout of ATLOP's `nn.Linear(emb_size * block_size, num_labels)`, so its checkpoints convert
    by renaming alone. Input `head`, `tail`: [N, emb_size]; output [N, num_labels].
    """

    def __init__(self, emb_size, block_size, num_labels, bias=True):
        super().__init__()
        self.emb_size = emb_size
        self.block_size = block_size
        self.weight = nn.Parameter(torch.empty(num_labels, emb_size * block_size))
        self.bias = nn.Parameter(torch.empty(num_labels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, head, tail):
        bias = self.bias if self.bias is not None else self.weight.new_zeros(self.weight.shape[0])
        return _GroupBilinearFunction.apply(head, tail, self.weight, bias, self.block_size)

    def extra_repr(self):
        return f"emb_size={self.emb_size}, block_size={self.block_size}, num_labels={self.weight.shape[0]}"


class PairBilinear(nn.Bilinear):
    """`nn.Bilinear` (same weight [R, in1, in2] and bias) computed as one matmul: x1 (W reshaped [in1, R * in2]),
    then a product with x2. PyTorch's own bilinear backward (`_trilinear`) is an order of magnitude slower on CPU."""

    def forward(self, input1, input2):
        out_features, in1, in2 = self.weight.shape
        projected = (input1 @ self.weight.permute(1, 0, 2).reshape(in1, out_features * in2)).view(-1, out_features, in2)
        result = torch.einsum("nrj,nj->nr", projected, input2.reshape(-1, in2))
        if self.bias is not None:
            result = result + self.bias
        return result.view(*input1.shape[:-1], out_features)


class EntityPairBilinear(nn.Bilinear):
    """`nn.Bilinear` over entity pairs that projects each entity once instead of once per pair.

    `nn.Bilinear(e_h, e_t)` costs in1 x in2 x out multiply-adds per pair (DSDocRE's 768 x 768 x 256 = 151 M); with E
    entities and all E (E - 1) pairs that is E times more work than projecting every entity once
    ([B, E, in1] -> [B, E, out, in2]) and taking dot products with the tails ([B, E, E, out] for all pairs at once).
    The parameters are `nn.Bilinear`'s, so the two are interchangeable.
    """

    def table(self, entities):
        """entities [B, E, in] -> [B, E, E, out]: the bilinear of every ordered (head, tail) pair."""
        projected = torch.einsum("beh,ohk->beok", entities, self.weight)  # [B, E, out, in2]
        return torch.einsum("beok,bfk->befo", projected, entities) + self.bias

    def pairs(self, entities, pair_batch, heads, tails):
        """entities [B, E, in] -> [N, out] for the N pairs (pair_batch, heads, tails)."""
        return self.table(entities)[pair_batch, heads, tails]


class AxialPairAttention(nn.Module):
    """Axial attention over the n x n entity-pair table (KD-DocRE, Tan et al. 2022, Eq. 7).

    For the cell (s, o): r = g(s,o) + sum_p softmax_p(q(s,o)·k(p,o)) v(p,o) + sum_p softmax_p(q(s,o)·k(s,p)) v(s,p),
    i.e. attention along the column and along the row of the pair, each added residually, with q, k, v linear maps
    (no bias) of the pair representation g. Keys are only the cells that are real pairs of the same document, so
    padded entities, the diagonal and pairs not scored (candidate pairs) take no part and a document's result does
    not depend on its batch. Works for any number of entities (the table is [B, E, E, d]).
    """

    def __init__(self, hidden_size):
        super().__init__()
        self.query = nn.Linear(hidden_size, hidden_size, bias=False)
        self.key = nn.Linear(hidden_size, hidden_size, bias=False)
        self.value = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, pair_repr, pair_batch, heads, tails, batch_size, num_entities):
        """pair_repr [N, d] for the N real pairs at (pair_batch, heads, tails) -> [N, d]."""
        size = pair_repr.shape[-1]
        cells = (pair_batch, heads, tails)

        def table(values):  # [N, d] -> [B, E, E, d], zeros where there is no real pair
            return values.new_zeros(batch_size, num_entities, num_entities, size).index_put(cells, values)

        query, key, value = table(self.query(pair_repr)), table(self.key(pair_repr)), table(self.value(pair_repr))
        valid = torch.zeros(batch_size, num_entities, num_entities, dtype=torch.bool, device=pair_repr.device)
        valid = valid.index_put(cells, torch.ones_like(heads, dtype=torch.bool))
        lowest = torch.finfo(query.dtype).min
        # Batched matmuls over the table: no [pairs, E, d] gathers. Queries of cells that are not pairs give
        # finite garbage that is never read.
        # Along the column of (s, o): keys (p, o) for every p.
        column_scores = torch.einsum("bsod,bpod->bsop", query, key)
        column_scores = column_scores.masked_fill(~valid.permute(0, 2, 1)[:, None, :, :], lowest)  # [b, s, o, p]: valid[b, p, o]
        column = torch.einsum("bsop,bpod->bsod", column_scores.softmax(-1), value)
        # Along the row of (s, o): keys (s, p) for every p.
        row_scores = torch.einsum("bsod,bspd->bsop", query, key).masked_fill(~valid[:, :, None, :], lowest)
        row = torch.einsum("bsop,bspd->bsod", row_scores.softmax(-1), value)
        column, row = column[cells], row[cells]
        return pair_repr + column + row


class _AxisSelfAttention(nn.Module):
    """Multi-head self-attention along one axis of the pair table, no mask (the released KD-DocRE network). Parameter
    names follow the `axial-attention` 0.6.1 package its checkpoints were written with: `to_q` and `to_kv` without
    bias, `to_out` with bias."""

    def __init__(self, size, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(size, size, bias=False)
        self.to_kv = nn.Linear(size, 2 * size, bias=False)
        self.to_out = nn.Linear(size, size)

    def forward(self, x):
        """x [N, T, d] (N sequences of T cells) -> [N, T, d]."""
        count, length, size = x.shape
        query, key, value = (self.to_q(x), *self.to_kv(x).chunk(2, dim=-1))

        def split(t):  # [N, T, d] -> [N, heads, T, d / heads]
            return t.view(count, length, self.heads, size // self.heads).transpose(1, 2)

        query, key, value = split(query), split(key), split(value)
        scores = torch.matmul(query, key.transpose(-1, -2)) * (size // self.heads) ** -0.5
        out = torch.matmul(scores.softmax(-1), value).transpose(1, 2).reshape(count, length, size)
        return self.to_out(out)


class _AxisPair(nn.Module):
    """Attention along the table's rows and along its columns, summed."""

    def __init__(self, size, heads):
        super().__init__()
        self.axial_attentions = nn.ModuleList([nn.Module(), nn.Module()])
        for wrapper in self.axial_attentions:  # `.fn`, as the package nests it
            wrapper.fn = _AxisSelfAttention(size, heads)

    def forward(self, table):
        """table [B, T, T, d] -> [B, T, T, d]."""
        batch, rows, columns, size = table.shape
        # axial_attentions[0] attends over the first table axis (the head entity) for each tail, [1] over the second.
        down = self.axial_attentions[0].fn(table.transpose(1, 2).reshape(batch * columns, rows, size))
        down = down.view(batch, columns, rows, size).transpose(1, 2)
        across = self.axial_attentions[1].fn(table.reshape(batch * rows, columns, size)).view(batch, rows, columns, size)
        return down + across


class ReleasedAxialNetwork(nn.Module):
    """The axial network of the released KD-DocRE code (not the paper's Eq. 7): `num_layers` layers of x = x + axial
    attention(x) (multi-head, rows and columns summed, no mask), then a linear layer and LayerNorm; the caller adds
    the outer residual. Runs over the whole padded table."""

    def __init__(self, size, num_layers=6, heads=8):
        super().__init__()
        if size % heads:
            raise ValueError(f"the released axial network needs a pair size ({size}) divisible by its heads ({heads})")
        self.axial_attns = nn.ModuleList([_AxisPair(size, heads) for _ in range(num_layers)])
        self.ffns = nn.ModuleList([nn.Linear(size, size) for _ in range(num_layers)])
        self.lns = nn.ModuleList([nn.LayerNorm(size) for _ in range(num_layers)])

    def forward(self, table):
        for attention, linear, norm in zip(self.axial_attns, self.ffns, self.lns):
            table = norm(linear(table + attention(table)))
        return table
