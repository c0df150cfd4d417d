"""Document-level relation extraction models (ATLOP and its relatives) on top of any transformers encoder.

Loaded through ``trust_remote_code``: flat siblings only (``from .x import y``), torch and transformers only.

Tensor contract (one row per document, everything padded):

- `input_ids`, `attention_mask`: [B, L]; L may exceed the encoder's window (long documents are windowed).
- `mention_index`: [B, E, M] token index of each mention's start marker, -1 = padding.
- `pair_index`: [B, P, 2] (head, tail) entity ids, -1 = padding.
- `labels`: [B, P, R] multi-hot, column 0 = NA/TH; padded pairs are -100.
- output `logits`: [B, P, R]; padded pairs get logits that never decode to a relation.
"""

import math
import os
import shutil
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface
from transformers.utils import ModelOutput, logging

logger = logging.get_logger(__name__)

try:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
except ImportError:  # pragma: no cover - older layouts
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sdpa_attention_forward = ALL_ATTENTION_FUNCTIONS["sdpa"]

from .configuration_docre import DocREConfig
from .losses_docre import (
    PAD_RELATION_LOGIT,
    decode_relations,
    distillation_pair_loss,
    relation_loss_fn,
    relation_scores,
    tune_global_threshold,
)

PIPELINE_TASK = "doc-relation-extraction"

# ----------------------------------------------------------------------------------------------------------------------
# Attention: sdpa everywhere, eager (with weights) only in the encoder's last layer, and only when weights are asked for.
# ----------------------------------------------------------------------------------------------------------------------

LAST_LAYER_ATTENTION = "docre_last_layer_eager"


def last_layer_eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention function for `transformers.AttentionInterface`.

    Every layer runs sdpa. When attention weights are requested, the encoder's last layer also returns softmax
    weights: for the query rows in `docre_attention_rows` ([B, Q] token positions) only, as [B, H, Q, L], or for
    every row ([B, H, L, L]) when no rows are given. Weights are taken before dropout, so each row is a
    distribution. Modules without a `layer_idx` count as the last layer (correct, only slower).
    """
    wants_weights = kwargs.pop("output_attentions", False)
    rows = kwargs.pop("docre_attention_rows", None)
    layer_idx = getattr(module, "layer_idx", None)
    num_layers = getattr(getattr(module, "config", None), "num_hidden_layers", None)
    is_last = layer_idx is None or num_layers is None or layer_idx == num_layers - 1
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


# ----------------------------------------------------------------------------------------------------------------------
# Group bilinear without the [pairs, emb_size * block_size] outer-product tensor
# ----------------------------------------------------------------------------------------------------------------------


def _compute_dtype(tensor):
    device_type = tensor.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return tensor.dtype


# Localized context pooling computes q for one chunk of head entities against all entities at a time: at most this
# many elements ([C, E, L]); a document that is short or has few entities is one chunk.
LOCALIZED_CONTEXT_CHUNK_ELEMENTS = 1 << 24

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

    def __init__(self, emb_size, block_size, num_labels):
        super().__init__()
        self.emb_size = emb_size
        self.block_size = block_size
        self.weight = nn.Parameter(torch.empty(num_labels, emb_size * block_size))
        self.bias = nn.Parameter(torch.empty(num_labels))
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, head, tail):
        return _GroupBilinearFunction.apply(head, tail, self.weight, self.bias, self.block_size)

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


# ----------------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class DocREModelOutput(ModelOutput):
    """Output of a DocRE model.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): mean loss over the real pairs, when `labels` is given.
        logits (`torch.FloatTensor` of shape `[B, P, R]`): relation logits; column 0 is the TH/NA class.
        context_weights (`torch.FloatTensor` of shape `[B, P, L]`, *optional*): the localized-context (LOP) weights
            of each pair over the document's tokens (rows sum to 1); with `output_context_weights=True`.
        entity_embeddings (`torch.FloatTensor` of shape `[B, E, D]`, *optional*): pooled entity embeddings; with
            `output_entity_embeddings=True`.
        pair_loss (`torch.FloatTensor` of shape `[B, P]`, *optional*): the loss of each pair (0 for padding),
            distillation included.
        distillation_loss (`torch.FloatTensor` of shape `[B, P]`, *optional*): the weighted distillation loss of
            each pair, when `teacher_logits` are given (with or without labels).
        scored_pairs (`torch.LongTensor` of shape `[B, P]`): 1 for the pairs the head scored; 0 for padding and for
            pairs left unscored (`distant_pairs="no_relation"`), whose logits decode as NA and which take no loss.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    context_weights: torch.FloatTensor | None = None
    entity_embeddings: torch.FloatTensor | None = None
    pair_loss: torch.FloatTensor | None = None
    distillation_loss: torch.FloatTensor | None = None
    scored_pairs: torch.LongTensor | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Encoding of documents of any length
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class EncodedDocuments:
    """`sequence_output` [B, L, D], `entity_attention` [B, E, H, L] (mean of the mentions' attention rows) and
    `shared_window` [B, E, E] bool: whether some encoder window holds a mention of both entities (None when every
    document fits one window, so every pair shares it)."""

    sequence_output: torch.Tensor
    entity_attention: torch.Tensor | None
    shared_window: torch.Tensor | None = None


# Encoder cost of one extra sub-batch, in padded tokens: below this saving, documents share a sub-batch.
BUCKET_OVERHEAD_TOKENS = 128


def _length_buckets(lengths):
    """Split sequence indices into sub-batches of similar length, minimising padded tokens + a cost per sub-batch.

    Sorted by length, the best contiguous split is found by dynamic programming (B is small). Returns lists of
    indices, longest sub-batch first.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    sorted_lengths = [lengths[i] for i in order]
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the first j sorted sequences
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            cost = best[i] + (j - i) * sorted_lengths[i] + BUCKET_OVERHEAD_TOKENS
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def plan_windows(lengths, window_size, stride, prefix, suffix):
    """Split documents into overlapping windows of at most `window_size` tokens.

    Each window is `prefix` special tokens + a slice of the document's content + `suffix` special tokens. A document
    that fits is one window equal to itself. The last window ends at the document's end.

    Args:
        lengths: list of the real token count of each document (special tokens included).
    Returns:
        list of `(document, content_start, content_length)`, in document order.
    """
    capacity = window_size - prefix - suffix
    if capacity <= 0:
        raise ValueError(f"window_size={window_size} leaves no room for content after {prefix + suffix} special tokens")
    windows = []
    for doc, length in enumerate(lengths):
        content = max(0, length - prefix - suffix)
        if length <= window_size:
            windows.append((doc, 0, content))
            continue
        start = 0
        while True:
            if start + capacity >= content:
                windows.append((doc, content - capacity, capacity))
                break
            windows.append((doc, start, capacity))
            start += stride
    return windows


# ----------------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------------


class DocREPreTrainedModel(PreTrainedModel):
    config_class = DocREConfig
    base_model_prefix = "docre"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module):
        # Head layers use PyTorch's default initialisation, as the papers' code does; the encoder keeps its own.
        if isinstance(module, (nn.Linear, nn.Bilinear, GroupBilinear)):
            bound = 1.0 / math.sqrt(module.weight.shape[1])
            torch.nn.init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                torch.nn.init.uniform_(module.bias, -bound, bound)


class DocREModel(DocREPreTrainedModel):
    """ATLOP (Zhou et al. 2021) on any encoder: marker-token mention embeddings, logsumexp/max/mean pooling,
    localized context pooling from the last attention layer, group bilinear, adaptive-thresholding or BCE loss.

    Build one from a pretrained encoder with [`DocREModel.from_encoder`], or load a trained one with
    `from_pretrained`.
    """

    accepts_loss_kwargs = False

    def __init__(self, config: DocREConfig):
        super().__init__(config)
        encoder_config = config.encoder
        self.encoder = self._new_encoder(encoder_config)

        hidden = encoder_config.hidden_size
        num_relations = config.num_relations
        if config.pair_head == "group_bilinear":
            context = hidden if config.use_context_pooling else 0
            self.head_extractor = nn.Linear(hidden + context, config.emb_size)
            self.tail_extractor = nn.Linear(hidden + context, config.emb_size)
            if config.axial_attention:
                pair_hidden = config.pair_hidden_size or hidden
                self.bilinear = GroupBilinear(config.emb_size, config.block_size, pair_hidden)
                self.axial_attention = AxialPairAttention(pair_hidden)
                self.classifier = nn.Linear(pair_hidden, num_relations)
            else:
                self.bilinear = GroupBilinear(config.emb_size, config.block_size, num_relations)
        else:
            self.projection = nn.Linear(hidden, config.emb_size)
            self.bilinear = PairBilinear(config.emb_size, config.emb_size, num_relations)
        if config.two_step:
            # Step 1 (relation or not) is its own model in the paper: its own encoder unless shared.
            self.existence_encoder = None if config.two_step_shared_encoder else self._new_encoder(encoder_config)
            self.existence_projection = nn.Linear(hidden, config.emb_size)
            self.existence_bilinear = PairBilinear(config.emb_size, config.emb_size, 1)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.tokenizer = None
        self.post_init()

    # -- construction ------------------------------------------------------------------------------------------------

    @staticmethod
    def _new_encoder(encoder_config):
        """The encoder, with sdpa and a last-layer-only eager path where it supports attention functions (else eager)."""
        encoder = AutoModel.from_config(encoder_config)
        if getattr(encoder, "pooler", None) is not None:
            # The pooler is never used; dropping it keeps DDP from waiting on gradients that never come.
            encoder.pooler = None
        implementation = LAST_LAYER_ATTENTION if getattr(type(encoder), "_supports_attention_backend", False) else "eager"
        encoder.set_attn_implementation(implementation)
        return encoder

    @classmethod
    def from_encoder(cls, encoder_name_or_path, relations, tokenizer=None, relation_names=None, **config_kwargs):
        """Build a DocRE model with pretrained encoder weights and a fresh head.

        Args:
            encoder_name_or_path: Hub id or local folder of any encoder `AutoModel` loads (with a fast tokenizer).
            relations: relation labels (without NA, which becomes index 0), or a `{code: name}` dict.
            tokenizer: a tokenizer to use instead of the encoder's own.
            relation_names: optional `{code: human name}`.
            **config_kwargs: any [`DocREConfig`] option (`loss`, `mention_pooling`, `window_stride`, ...).
        """
        if isinstance(relations, dict):
            relation_names = {**relations, **(relation_names or {})}
            relations = list(relations)
        encoder = AutoModel.from_pretrained(encoder_name_or_path)
        if tokenizer is None:
            tokenizer = load_tokenizer(encoder_name_or_path)
        prefix, suffix = special_token_layout(tokenizer)
        config_kwargs.setdefault("window_prefix_tokens", prefix)
        config_kwargs.setdefault("window_suffix_tokens", suffix)
        config = DocREConfig(
            encoder=encoder.config, relations=relations, relation_names=relation_names, **config_kwargs
        )
        if config.window_size is None:
            # The window is the smaller of the tokenizer's limit and the encoder's position table.
            limits = [config.effective_window_size, getattr(tokenizer, "model_max_length", None)]
            limits = [int(limit) for limit in limits if limit is not None and limit < 1_000_000]
            config.window_size = min(limits) if limits else None
        model = cls(config)
        for target in (model.encoder, getattr(model, "existence_encoder", None)):
            if target is None:
                continue
            missing, unexpected = target.load_state_dict(encoder.state_dict(), strict=False)
            missing = [k for k in missing if not k.startswith("pooler.")]
            if missing:
                raise RuntimeError(f"from_encoder: encoder weights missing after loading {encoder_name_or_path}: {missing}")
        model.config.encoder._name_or_path = str(encoder_name_or_path)
        model.tokenizer = tokenizer
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True gives (model, info)
        if hasattr(model.config, "custom_pipelines"):
            del model.config.custom_pipelines  # see save_pretrained
        if getattr(model, "tokenizer", None) is None:
            hub_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
            try:
                # With the config given, AutoTokenizer does not read config.json (whose custom model type would
                # make it ask about remote code).
                model.tokenizer = load_tokenizer(pretrained_model_name_or_path, config=model.config, **hub_kwargs)
                vocab_size = getattr(model.config.encoder, "vocab_size", None)
                if vocab_size and len(model.tokenizer) < vocab_size // 2:
                    raise ValueError(
                        f"the tokenizer found there has {len(model.tokenizer)} tokens for an encoder with {vocab_size} "
                        "(is tokenizer.json or the vocabulary file missing?)"
                    )
            except (OSError, ValueError) as error:
                model.tokenizer = None
                logger.warning(
                    f"DocREModel.from_pretrained({str(pretrained_model_name_or_path)!r}): no usable tokenizer ({error}). "
                    "Pass one to the pipeline (`tokenizer=`) or set `model.tokenizer`."
                )
        return loaded

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save weights (safetensors), config with `auto_map` and `custom_pipelines`, the modeling and pipeline
        code, and the tokenizer: the folder works with `trust_remote_code` where hf_docre is not installed."""
        kwargs.setdefault("safe_serialization", True)
        type(self).register_for_auto_class("AutoModel")
        type(self.config).register_for_auto_class()
        # Written to config.json only: in memory it would make pipeline() insist on remote code even where
        # hf_docre is installed and its pipeline registered.
        self.config.custom_pipelines = {
            PIPELINE_TASK: {
                "impl": "pipeline_docre.DocumentRelationExtractionPipeline",
                "pt": ["AutoModel"],
                "tf": [],
                "type": "text",
            }
        }
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            del self.config.custom_pipelines
        # The pipeline's code and what it imports (save_pretrained copies only the model's module and its imports).
        here = os.path.dirname(os.path.abspath(__file__))
        for name in ("pipeline_docre.py", "processing_docre.py", "losses_docre.py", "text_docre.py"):
            shutil.copyfile(os.path.join(here, name), os.path.join(save_directory, name))
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)

    # -- forward -----------------------------------------------------------------------------------------------------

    def _encoder_forward(self, input_ids, attention_mask, attention_rows=None, encoder=None):
        """Run the encoder (`self.encoder` unless another is given) once. Returns hidden states [N, W, D] and, when
        `attention_rows` ([N, Q] positions) is given, the last layer's attention of those rows [N, H, Q, W]."""
        encoder = self.encoder if encoder is None else encoder
        if attention_rows is None:
            outputs = encoder(input_ids=input_ids, attention_mask=attention_mask)
            return outputs.last_hidden_state, None
        if encoder.config._attn_implementation == LAST_LAYER_ATTENTION:
            outputs = encoder(
                input_ids=input_ids, attention_mask=attention_mask, output_attentions=True,
                docre_attention_rows=attention_rows,
            )
            return outputs.last_hidden_state, outputs.attentions[-1]
        # Encoders without attention functions: eager everywhere, then keep the rows asked for.
        outputs = encoder(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
        attention = outputs.attentions[-1]
        index = attention_rows[:, None, :, None].expand(-1, attention.shape[1], -1, attention.shape[-1])
        return outputs.last_hidden_state, attention.gather(2, index)

    def _encode_bucketed(self, input_ids, lengths, attention_rows=None, encoder=None):
        """`_encoder_forward` over sequences of different lengths, in sub-batches of similar length.

        Padding a short document to a long one's length wastes encoder work; sub-batches are chosen to minimise
        (padded tokens + a fixed cost per sub-batch). Results are padded back to `input_ids.shape[1]`.
        """
        count, length = input_ids.shape
        groups = _length_buckets(lengths)
        if len(groups) == 1:
            width = max(lengths)
            mask = (torch.arange(width, device=input_ids.device)[None, :] < torch.as_tensor(lengths, device=input_ids.device)[:, None])
            hidden, attention = self._encoder_forward(input_ids[:, :width], mask.long(), attention_rows, encoder)
            if width < length:
                hidden = nn.functional.pad(hidden, (0, 0, 0, length - width))
                attention = None if attention is None else nn.functional.pad(attention, (0, length - width))
            return hidden, attention
        hidden = attention = None
        for group in groups:
            index = torch.as_tensor(group, device=input_ids.device)
            group_lengths = [lengths[i] for i in group]
            rows = None if attention_rows is None else attention_rows[index]
            part_hidden, part_attention = self._encode_bucketed(input_ids[index], group_lengths, rows, encoder)
            if hidden is None:
                hidden = part_hidden.new_zeros(count, *part_hidden.shape[1:])
                if part_attention is not None:
                    attention = part_attention.new_zeros(count, *part_attention.shape[1:])
            hidden = hidden.index_copy(0, index, part_hidden)
            if attention is not None:
                attention = attention.index_copy(0, index, part_attention)
        return hidden, attention

    def encode(self, input_ids, attention_mask, mention_index, need_attention=True, encoder=None):
        """Encode documents of any length. Returns [`EncodedDocuments`].

        Documents that fit the encoder's window are encoded as they are. Longer ones are cut into windows
        (`plan_windows`) that are encoded as one batch with the rest; hidden states are averaged where windows
        overlap. For localized context pooling only the mentions' attention rows of the last layer are computed;
        in a window that is not the whole document each row is renormalised over the tokens the window keeps (it
        drops special tokens that are not the document's own), then averaged over the windows holding the mention.
        """
        config = self.config
        window = config.effective_window_size
        lengths = attention_mask.sum(-1)
        if not torch.equal(attention_mask.long().cumprod(-1).sum(-1), lengths):
            raise ValueError("DocREModel expects right-padded inputs: every attention_mask row must be 1s then 0s.")
        lengths = lengths.tolist()
        if window is None or max(lengths) <= window:
            rows = mention_index.clamp(min=0).flatten(1) if need_attention else None
            sequence_output, row_attention = self._encode_bucketed(input_ids, lengths, rows, encoder)
            entity_attention = None
            if need_attention:
                valid = (mention_index >= 0).to(row_attention.dtype)
                weights = valid / valid.sum(-1, keepdim=True).clamp(min=1)  # mean over an entity's mentions
                batch_size, num_entities, num_mentions = mention_index.shape
                row_attention = row_attention.view(batch_size, -1, num_entities, num_mentions, row_attention.shape[-1])
                entity_attention = torch.einsum("bem,bhemk->behk", weights, row_attention)
            return EncodedDocuments(sequence_output, entity_attention)
        return self._encode_windows(input_ids, mention_index, lengths, need_attention, encoder)

    def _encode_windows(self, input_ids, mention_index, lengths, need_attention, encoder=None):
        config = self.config
        device = input_ids.device
        batch_size, length = input_ids.shape
        prefix, suffix = config.window_prefix_tokens, config.window_suffix_tokens
        plan = plan_windows(lengths, config.effective_window_size, config.effective_window_stride, prefix, suffix)
        doc, start, content = (torch.tensor(column, device=device)[:, None] for column in zip(*plan))
        doc_content = torch.as_tensor(lengths, device=device)[doc] - prefix - suffix  # [N, 1]
        window_lengths = [prefix + size + suffix for _, _, size in plan]
        window_length = max(window_lengths)
        local = torch.arange(window_length, device=device)[None, :]  # [1, W]

        in_prefix = local < prefix
        in_content = (local >= prefix) & (local < prefix + content)
        in_window = local < prefix + content + suffix
        # Where each window position reads from / writes to in the document.
        source = torch.where(in_prefix, local, torch.where(in_content, local + start, local + doc_content - content))
        source = torch.where(in_window, source, torch.zeros_like(source))
        first = start == 0
        last = start + content == doc_content
        keep = in_content | (in_prefix & first) | (in_window & ~in_prefix & ~in_content & last)

        pad_id = config.encoder.pad_token_id
        window_ids = input_ids[doc, source].masked_fill(~in_window, pad_id if pad_id is not None else 0)

        window_mentions = mention_index[doc[:, 0]]  # [N, E, M]
        local_mention = window_mentions - start[:, :, None]
        inside = (window_mentions >= 0) & (local_mention >= prefix) & (local_mention < prefix + content[:, :, None])
        # Pairs of entities with a mention each in one window; only those pairs' relations were ever seen in training.
        entity_in_window = inside.any(-1).to(torch.float32)  # [N, E]
        by_document = entity_in_window.new_zeros(batch_size, *entity_in_window.shape)  # [B, N, E], 0 outside the document
        by_document[doc[:, 0], torch.arange(len(plan), device=device)] = entity_in_window
        shared_window = torch.bmm(by_document.transpose(1, 2), by_document) > 0  # [B, E, E]
        rows = slot_mention = slot_valid = None
        if need_attention:
            # Attention rows only for the mentions inside each window ([N, Q], Q = the most any window holds), not
            # for every mention of the document in every window: a long document with hundreds of entities would
            # otherwise ask for [windows, heads, all mentions, window] floats.
            inside_flat = inside.flatten(1)  # [N, E * M]
            num_slots = max(1, int(inside_flat.sum(-1).max()))
            slot_mention = torch.argsort((~inside_flat).to(torch.int8), dim=1, stable=True)[:, :num_slots]  # e * M + m
            slot_valid = inside_flat.gather(1, slot_mention)
            rows = local_mention.flatten(1).gather(1, slot_mention).masked_fill(~slot_valid, 0)
        hidden, row_attention = self._encode_bucketed(window_ids, window_lengths, rows, encoder)

        # Hidden states: sum over windows into the document, divided by how many windows kept each token.
        target = torch.where(keep, doc * (length + 1) + source, doc * (length + 1) + length).reshape(-1)
        hidden_size = hidden.shape[-1]
        kept_tokens = keep.to(hidden.dtype).expand_as(window_ids).reshape(-1)
        summed = hidden.new_zeros(batch_size * (length + 1), hidden_size).index_add(0, target, hidden.reshape(-1, hidden_size))
        counts = hidden.new_zeros(batch_size * (length + 1)).index_add(0, target, kept_tokens)
        sequence_output = (summed / counts.clamp(min=1)[:, None]).view(batch_size, length + 1, hidden_size)[:, :length]
        if not need_attention:
            return EncodedDocuments(sequence_output, None, shared_window)

        # Renormalise rows over the kept columns (windows that are the whole document are left untouched), then
        # average each mention over the windows holding it and each entity over its mentions.
        whole = (first & last)[:, :, None, None]
        kept = row_attention * keep[:, None, None, :].to(row_attention.dtype)
        row_sum = kept.sum(-1, keepdim=True)
        row_attention = torch.where(whole, row_attention, kept / row_sum.clamp(min=torch.finfo(row_sum.dtype).tiny))
        windows_per_mention = torch.zeros_like(mention_index).index_add(0, doc[:, 0], inside.to(mention_index.dtype))
        mentions_per_entity = (mention_index >= 0).sum(-1, keepdim=True).clamp(min=1)
        share = windows_per_mention[doc[:, 0]].clamp(min=1) * mentions_per_entity[doc[:, 0]]
        weights = (inside.to(row_attention.dtype) / share.to(row_attention.dtype)).flatten(1)  # [N, E * M]
        slot_weight = weights.gather(1, slot_mention) * slot_valid.to(weights.dtype)  # [N, Q]
        num_windows, num_entities, num_mentions = inside.shape
        num_heads = row_attention.shape[1]
        # Each slot's weighted row goes to (its entity, the document position of each window column).
        slot_entity = torch.div(slot_mention, num_mentions, rounding_mode="floor")  # [N, Q]
        positions = batch_size * (length + 1)
        index = slot_entity[:, :, None] * positions + target.view(num_windows, 1, window_length)  # [N, Q, W]
        values = (row_attention * slot_weight[:, None, :, None]).permute(0, 2, 3, 1)  # [N, Q, W, H]
        entity_attention = values.new_zeros(num_entities * positions, num_heads).index_add(
            0, index.reshape(-1), values.reshape(-1, num_heads)
        )
        entity_attention = entity_attention.view(num_entities, batch_size, length + 1, num_heads)[:, :, :length]
        return EncodedDocuments(sequence_output, entity_attention.permute(1, 0, 3, 2), shared_window)

    def pool_entities(self, sequence_output, mention_index, mention_end=None):
        """Entity embeddings [B, E, D] from the hidden states of their mentions' start tokens, or with
        `mention_representation="span"` the mean of every token of every mention ([mention_index, mention_end))."""
        valid = mention_index >= 0
        if self.config.mention_representation == "span":
            if mention_end is None:
                raise ValueError("mention_representation='span' needs `mention_end` [B, E, M] (DocREFeaturizer.from_model makes it).")
            positions = torch.arange(sequence_output.shape[1], device=mention_index.device)
            inside = (positions >= mention_index[..., None]) & (positions < mention_end[..., None]) & valid[..., None]
            token_weights = inside.sum(2).to(sequence_output.dtype)  # [B, E, L]: a token in two mentions counts twice
            token_weights = token_weights / token_weights.sum(-1, keepdim=True).clamp(min=1)
            return torch.bmm(token_weights, sequence_output)
        batch_index = torch.arange(mention_index.shape[0], device=mention_index.device)[:, None, None]
        mentions = sequence_output[batch_index, mention_index.clamp(min=0)]  # [B, E, M, D]
        has_mention = valid.any(-1, keepdim=True)  # [B, E, 1]
        mask = valid[..., None]
        pooling = self.config.mention_pooling
        if pooling == "logsumexp":
            pooled = torch.logsumexp(mentions.masked_fill(~mask, float("-inf")), dim=2)
        elif pooling == "max":
            pooled = mentions.masked_fill(~mask, float("-inf")).amax(dim=2)
        else:
            pooled = (mentions * mask).sum(2) / valid.sum(-1, keepdim=True).clamp(min=1)
        return torch.where(has_mention, pooled, torch.zeros_like(pooled))

    def localized_context(self, sequence_output, entity_attention, pair_batch, heads, tails, own_context=None,
                          need_weights=False):
        """Localized context pooling (ATLOP Sec. 5) for the N pairs (`pair_batch`, `heads`, `tails`, each [N]).
        Returns the context c [N, D] and, with `need_weights`, the weights a [N, L] (else None).

        q = sum over heads of A_s * A_o; a = q / sum(q); c = H^T a. In a long document, entities that share no
        window have attention with (almost) disjoint support, so q is 0 or nearly. Pairs marked in `own_context`
        ([N] bool; `distant_pairs="entity_context"`) take instead the mean of the two entities' own attention,
        a = (mean_h A_s + mean_h A_o) / 2; other pairs with q = 0 get no context (a = c = 0).

        q is computed document by document for a chunk of head entities against all entities at a time ([C, E, L],
        at most `LOCALIZED_CONTEXT_CHUNK_ELEMENTS`), so memory does not grow with E x E x L on long documents.
        """
        num_entities, length = entity_attention.shape[1], entity_attention.shape[-1]
        rows_per_chunk = max(1, LOCALIZED_CONTEXT_CHUNK_ELEMENTS // max(1, num_entities * length))
        entity_mean = entity_attention.mean(2) if own_context is not None else None  # [B, E, L]
        order, contexts, all_weights = [], [], []
        for b in pair_batch.unique().tolist():
            in_document = pair_batch == b
            for start in range(0, num_entities, rows_per_chunk):
                selected = (in_document & (heads >= start) & (heads < start + rows_per_chunk)).nonzero().squeeze(-1)
                if selected.numel() == 0:
                    continue
                attention = entity_attention[b]
                q = torch.einsum("shl,ohl->sol", attention[start : start + rows_per_chunk], attention)  # [C, E, L]
                head, tail = heads[selected], tails[selected]
                q = q[head - start, tail]  # [n, L]
                if own_context is not None:
                    own = (entity_mean[b, head] + entity_mean[b, tail]) / 2
                    q = torch.where(own_context[selected][:, None], own, q)
                total = q.sum(-1, keepdim=True)
                weights = q / torch.where(total > 0, total, torch.ones_like(total))
                order.append(selected)
                contexts.append(weights.to(sequence_output.dtype) @ sequence_output[b])
                if need_weights:
                    all_weights.append(weights)
        if not order:
            return sequence_output.new_zeros(0, sequence_output.shape[-1]), entity_attention.new_zeros(0, length) if need_weights else None
        inverse = torch.argsort(torch.cat(order))  # back to the order of the N pairs (each is in one chunk)
        context = torch.cat(contexts)[inverse]
        return context, (torch.cat(all_weights)[inverse] if need_weights else None)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        mention_index=None,
        pair_index=None,
        labels=None,
        mention_end=None,
        teacher_logits=None,
        output_context_weights=False,
        output_entity_embeddings=False,
        return_dict=None,
        **kwargs,
    ):
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `[B, L]`): token ids with entity markers (any length).
            attention_mask (`torch.LongTensor` of shape `[B, L]`): 1 for real tokens.
            mention_index (`torch.LongTensor` of shape `[B, E, M]`): start-marker token of each mention, -1 = pad.
            pair_index (`torch.LongTensor` of shape `[B, P, 2]`): (head, tail) entity ids, -1 = pad.
            labels (`torch.FloatTensor` of shape `[B, P, R]`, *optional*): multi-hot relations, column 0 = NA;
                padded pairs are -100.
            mention_end (`torch.LongTensor` of shape `[B, E, M]`, *optional*): token after each mention's last
                token; needed by `mention_representation="span"`.
            teacher_logits (`torch.FloatTensor` of shape `[B, P, R]`, *optional*): a teacher's logits for the same
                pairs; adds the distillation loss (`config.distillation_loss`, KD-DocRE Eq. 12-13).
            output_context_weights (`bool`): also return the LOP weights [B, P, L].
            output_entity_embeddings (`bool`): also return the pooled entity embeddings [B, E, D].
        Returns:
            [`DocREModelOutput`]
        """
        if mention_index is None or pair_index is None:
            raise ValueError("DocREModel.forward needs `mention_index` [B, E, M] and `pair_index` [B, P, 2].")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        config = self.config
        use_context = config.use_context_pooling and config.pair_head == "group_bilinear"
        encoded = self.encode(input_ids, attention_mask, mention_index, need_attention=use_context)
        sequence_output = encoded.sequence_output

        entity_embeddings = self.pool_entities(sequence_output, mention_index, mention_end)  # [B, E, D]
        pair_mask = (pair_index[..., 0] >= 0) & (pair_index[..., 1] >= 0)  # [B, P]
        distant = None  # [B, P]: real pairs whose entities share no encoder window
        if encoded.shared_window is not None:
            batch_index = torch.arange(pair_index.shape[0], device=pair_index.device)[:, None]
            shares = encoded.shared_window[batch_index, pair_index[..., 0].clamp(min=0), pair_index[..., 1].clamp(min=0)]
            distant = pair_mask & ~shares
        # Distant pairs are out of the training distribution (documents that fit one window have none); by default
        # they are not scored and decode as NA (see `DocREConfig.distant_pairs`).
        scored = pair_mask & ~distant if distant is not None and config.distant_pairs == "no_relation" else pair_mask
        pair_batch, pair_slot = scored.nonzero(as_tuple=True)  # the N pairs the head scores
        heads = pair_index[pair_batch, pair_slot, 0]
        tails = pair_index[pair_batch, pair_slot, 1]

        context_weights = None
        entities = self.dropout(entity_embeddings)
        if config.pair_head == "group_bilinear":
            # W [h; c] = W_entity h + W_context c: the entity half is computed once per entity, not once per pair.
            hidden = sequence_output.shape[-1]
            head_entity = nn.functional.linear(entities, self.head_extractor.weight[:, :hidden])[pair_batch, heads]
            tail_entity = nn.functional.linear(entities, self.tail_extractor.weight[:, :hidden])[pair_batch, tails]
            head_repr = head_entity + self.head_extractor.bias
            tail_repr = tail_entity + self.tail_extractor.bias
            if use_context:
                own_context = None
                if config.distant_pairs == "entity_context" and distant is not None:
                    own_context = distant[pair_batch, pair_slot]
                context, pair_weights = self.localized_context(
                    sequence_output, encoded.entity_attention, pair_batch, heads, tails, own_context,
                    need_weights=output_context_weights,
                )
                if output_context_weights:
                    context_weights = pair_weights.new_zeros(*pair_mask.shape, pair_weights.shape[-1]).index_put(
                        (pair_batch, pair_slot), pair_weights
                    )
                context = self.dropout(context)  # [N, D]
                head_repr = head_repr + nn.functional.linear(context, self.head_extractor.weight[:, hidden:])
                tail_repr = tail_repr + nn.functional.linear(context, self.tail_extractor.weight[:, hidden:])
            real_logits = self.bilinear(torch.tanh(head_repr), torch.tanh(tail_repr))  # [N, R] (or [N, d] with axial)
            if config.axial_attention:
                pair_repr = self.axial_attention(real_logits, pair_batch, heads, tails, *entity_embeddings.shape[:2])
                real_logits = self.classifier(pair_repr)
        else:
            projected = self.projection(entities)  # [B, E, emb_size]
            real_logits = self.bilinear(projected[pair_batch, heads], projected[pair_batch, tails])
        if config.two_step:
            if self.existence_encoder is None:
                existence_entities = entities
            else:
                existence_sequence = self.encode(input_ids, attention_mask, mention_index, need_attention=False,
                                                 encoder=self.existence_encoder).sequence_output
                existence_entities = self.dropout(self.pool_entities(existence_sequence, mention_index, mention_end))
            projected = self.existence_projection(existence_entities)
            exists = self.existence_bilinear(projected[pair_batch, heads], projected[pair_batch, tails])  # [N, 1]
            real_logits = torch.cat([-exists, real_logits[:, 1:]], dim=-1)  # column 0: the no-relation logit

        logits = real_logits.new_full((*pair_mask.shape, config.num_relations), PAD_RELATION_LOGIT)  # NA unless scored
        logits[..., 0] = 0.0
        logits = logits.index_put((pair_batch, pair_slot), real_logits)

        distillation = None
        if teacher_logits is not None:
            per_pair = distillation_pair_loss(real_logits, teacher_logits[pair_batch, pair_slot], config.distillation_loss)
            distillation = per_pair.new_zeros(pair_mask.shape).index_put((pair_batch, pair_slot), config.distillation_weight * per_pair)
        loss = pair_loss = None
        if labels is not None:
            real_labels = labels[pair_batch, pair_slot].float()
            labeled = (real_labels[:, 0] != -100).to(real_logits.dtype)
            per_pair = relation_loss_fn(config, training=self.training)(real_logits, real_labels.clamp(min=0)) * labeled
            pair_loss = per_pair.new_zeros(pair_mask.shape).index_put((pair_batch, pair_slot), per_pair)
            if distillation is not None:
                pair_loss = pair_loss + distillation * scored.to(distillation.dtype)
            # The mean over every labelled real pair; unscored (distant) pairs count with a loss of 0, so the value
            # equals DocRELoss under the Trainer, whose item count comes from the labels alone.
            num_labeled = ((labels[..., 0] != -100) & pair_mask).sum()
            loss = pair_loss.sum() / num_labeled.clamp(min=1)

        return DocREModelOutput(
            loss=loss,
            logits=logits,
            context_weights=context_weights if output_context_weights else None,
            entity_embeddings=entity_embeddings if output_entity_embeddings else None,
            pair_loss=pair_loss,
            distillation_loss=distillation,
            scored_pairs=scored.long(),
        )

    # -- decoding ----------------------------------------------------------------------------------------------------

    def relation_scores(self, logits):
        """[..., R] probability of each relation (see `losses_docre.relation_scores`)."""
        return relation_scores(logits, self.config.decoding)

    def decode(self, logits):
        """[..., R] logits -> [..., R] bool predictions (column 0 = NA), with the config's threshold and top-k."""
        config = self.config
        return decode_relations(
            logits,
            loss=config.decoding,
            global_threshold=config.global_threshold,
            max_relations_per_pair=config.max_relations_per_pair,
        )

    def tune_global_threshold(self, logits, labels, candidates=None):
        """Set `config.global_threshold` (used with `loss="bce"`) to the value that maximises F1 on dev logits and
        labels ([..., R]); returns `(threshold, f1)`."""
        decoding = self.config.decoding
        if decoding == "threshold_class":
            raise ValueError("tune_global_threshold is for BCE and two-step heads; ATL/AFL heads learn their threshold.")
        threshold, f1 = tune_global_threshold(logits, labels, candidates, self.config.max_relations_per_pair, decoding)
        self.config.global_threshold = threshold
        return threshold, f1


def load_tokenizer(name_or_path, **kwargs):
    """A fast tokenizer that accepts pre-split words (byte-level BPE tokenizers need `add_prefix_space=True`)."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    if getattr(tokenizer, "add_prefix_space", None) is False:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, add_prefix_space=True, **kwargs)
    return tokenizer


def special_token_layout(tokenizer):
    """How many special tokens the tokenizer puts before and after a single sequence's content."""
    content = tokenizer("relation", add_special_tokens=False)["input_ids"]
    full = tokenizer("relation")["input_ids"]
    for prefix in range(len(full) - len(content) + 1):
        if full[prefix : prefix + len(content)] == content:
            return prefix, len(full) - len(content) - prefix
    return 1, 1
