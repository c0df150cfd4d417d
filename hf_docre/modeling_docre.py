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
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface
from transformers.utils import ModelOutput

try:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
except ImportError:  # pragma: no cover - older layouts
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sdpa_attention_forward = ALL_ATTENTION_FUNCTIONS["sdpa"]

from .configuration_docre import DocREConfig
from .losses_docre import PAD_RELATION_LOGIT, PAIR_LOSSES, decode_relations

# ----------------------------------------------------------------------------------------------------------------------
# Attention: sdpa everywhere, eager (with weights) only in the encoder's last layer, and only when weights are asked for.
# ----------------------------------------------------------------------------------------------------------------------

LAST_LAYER_ATTENTION = "docre_last_layer_eager"


def last_layer_eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention function for `transformers.AttentionInterface`.

    Runs sdpa in every layer except the last one when attention weights are requested; there it computes eager
    attention and returns the softmax weights [B, H, L, L] (before dropout, so they are a distribution). Modules
    without a `layer_idx` are treated as the last layer (correct, only slower).
    """
    wants_weights = kwargs.pop("output_attentions", False)
    layer_idx = getattr(module, "layer_idx", None)
    num_layers = getattr(getattr(module, "config", None), "num_hidden_layers", None)
    is_last = layer_idx is None or num_layers is None or layer_idx == num_layers - 1
    if not (wants_weights and is_last):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)

    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if key.shape[1] != query.shape[1]:  # grouped-query attention
        repeat = query.shape[1] // key.shape[1]
        key = key.repeat_interleave(repeat, dim=1)
        value = value.repeat_interleave(repeat, dim=1)
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : key.shape[-2]]
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    dropped = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(dropped, value).transpose(1, 2).contiguous()
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


class _GroupBilinearFunction(torch.autograd.Function):
    """logits[n, r] = sum_g head[n, g, :] @ W[r, g] @ tail[n, g, :] + bias[r], one group at a time.

    The naive form builds the outer product [N, k * bs * bs] (ATLOP: 49,152 floats per pair) and autograd keeps it
    for the backward pass. Here each group's [N, bs * bs] outer product is built, used and dropped, in forward and
    again in backward, so memory stays at one group's worth.
    """

    @staticmethod
    def forward(ctx, head, tail, weight, bias, block_size):
        dtype = _compute_dtype(head)
        input_dtypes = (head.dtype, tail.dtype, weight.dtype, bias.dtype)
        with torch.autocast(head.device.type, enabled=False):
            head_c, tail_c, weight_c, bias_c = (t.to(dtype) for t in (head, tail, weight, bias))
            num_pairs, emb_size = head_c.shape
            num_groups = emb_size // block_size
            num_labels = weight_c.shape[0]
            head_g = head_c.view(num_pairs, num_groups, block_size)
            tail_g = tail_c.view(num_pairs, num_groups, block_size)
            weight_g = weight_c.view(num_labels, num_groups, block_size * block_size)
            logits = bias_c.expand(num_pairs, num_labels).clone()
            for g in range(num_groups):
                outer = torch.bmm(head_g[:, g, :, None], tail_g[:, g, None, :]).view(num_pairs, block_size * block_size)
                logits.addmm_(outer, weight_g[:, g].t())
        ctx.save_for_backward(head_c, tail_c, weight_c)
        ctx.block_size = block_size
        ctx.input_dtypes = input_dtypes
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
        grad_head = torch.empty_like(head_g) if ctx.needs_input_grad[0] else None
        grad_tail = torch.empty_like(tail_g) if ctx.needs_input_grad[1] else None
        grad_weight = torch.empty_like(weight_g) if ctx.needs_input_grad[2] else None
        for g in range(num_groups):
            if grad_head is not None or grad_tail is not None:
                # mixed[n, i, j] = sum_r grad[n, r] * W[r, g, i, j]
                mixed = (grad_logits @ weight_g[:, g]).view(num_pairs, block_size, block_size)
                if grad_head is not None:
                    grad_head[:, g] = torch.bmm(mixed, tail_g[:, g, :, None]).squeeze(-1)
                if grad_tail is not None:
                    grad_tail[:, g] = torch.bmm(head_g[:, g, None, :], mixed).squeeze(1)
            if grad_weight is not None:
                outer = torch.bmm(head_g[:, g, :, None], tail_g[:, g, None, :]).view(num_pairs, block_size * block_size)
                grad_weight[:, g] = grad_logits.t() @ outer
        grad_bias = grad_logits.sum(0) if ctx.needs_input_grad[3] else None
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
        pair_loss (`torch.FloatTensor` of shape `[B, P]`, *optional*): the loss of each pair (0 for padding).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    context_weights: torch.FloatTensor | None = None
    entity_embeddings: torch.FloatTensor | None = None
    pair_loss: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Encoding of documents of any length
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class EncodedDocuments:
    """`sequence_output` [B, L, D] and `entity_attention` [B, E, H, L] (mean of the mentions' attention rows)."""

    sequence_output: torch.Tensor
    entity_attention: torch.Tensor | None


def _mention_selection(mention_index, length, dtype):
    """[B, E, L] weights that average an entity's mention rows: 1 / (number of mentions) at each mention position."""
    valid = mention_index >= 0
    count = valid.sum(-1, keepdim=True).clamp(min=1).to(dtype)
    weights = valid.to(dtype) / count
    selection = torch.zeros(*mention_index.shape[:2], length + 1, dtype=dtype, device=mention_index.device)
    position = torch.where(valid, mention_index, torch.full_like(mention_index, length))
    selection.scatter_add_(2, position, weights)
    return selection[..., :length]


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
        if isinstance(module, (nn.Linear, GroupBilinear)):
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
        self.encoder = AutoModel.from_config(encoder_config)
        if getattr(self.encoder, "pooler", None) is not None:
            # The pooler is never used; dropping it keeps DDP from waiting on gradients that never come.
            self.encoder.pooler = None
        self._setup_attention()

        hidden = encoder_config.hidden_size
        context = hidden if config.use_context_pooling else 0
        self.head_extractor = nn.Linear(hidden + context, config.emb_size)
        self.tail_extractor = nn.Linear(hidden + context, config.emb_size)
        self.bilinear = GroupBilinear(config.emb_size, config.block_size, config.num_relations)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.tokenizer = None
        self.post_init()

    # -- construction ------------------------------------------------------------------------------------------------

    def _setup_attention(self):
        """Use sdpa with a last-layer-only eager path where the encoder supports attention functions, else eager."""
        encoder_class = type(self.encoder)
        implementation = LAST_LAYER_ATTENTION if getattr(encoder_class, "_supports_attention_backend", False) else "eager"
        self.encoder.set_attn_implementation(implementation)

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
        config_kwargs.setdefault("window_size", _window_size(tokenizer, encoder.config))
        prefix, suffix = special_token_layout(tokenizer)
        config_kwargs.setdefault("window_prefix_tokens", prefix)
        config_kwargs.setdefault("window_suffix_tokens", suffix)
        config = DocREConfig(
            encoder=encoder.config, relations=relations, relation_names=relation_names, **config_kwargs
        )
        model = cls(config)
        missing, unexpected = model.encoder.load_state_dict(encoder.state_dict(), strict=False)
        missing = [k for k in missing if not k.startswith("pooler.")]
        if missing:
            raise RuntimeError(f"from_encoder: encoder weights missing after loading {encoder_name_or_path}: {missing}")
        model.config.encoder._name_or_path = str(encoder_name_or_path)
        model.tokenizer = tokenizer
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        if getattr(model, "tokenizer", None) is None:
            hub_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
            try:
                model.tokenizer = load_tokenizer(pretrained_model_name_or_path, **hub_kwargs)
            except (OSError, ValueError):
                model.tokenizer = None
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save weights (safetensors), config with `auto_map`, the modeling code and the tokenizer."""
        kwargs.setdefault("safe_serialization", True)
        type(self).register_for_auto_class("AutoModel")
        type(self.config).register_for_auto_class()
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)

    # -- forward -----------------------------------------------------------------------------------------------------

    def _encoder_forward(self, input_ids, attention_mask, output_attentions):
        outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_attentions=output_attentions)
        attention = outputs.attentions[-1] if output_attentions else None
        return outputs.last_hidden_state, attention

    def encode(self, input_ids, attention_mask, mention_index, need_attention=True):
        """Encode documents of any length. Returns [`EncodedDocuments`].

        Documents that fit the encoder's window go through it in one plain call. Otherwise every document is cut
        into windows (`plan_windows`) that are encoded as one batch; hidden states are averaged where windows
        overlap, and each window's attention rows are renormalised over the tokens it keeps (a window drops the
        special tokens that are not the document's own) and averaged over the windows that contain the mention.
        """
        config = self.config
        window = config.effective_window_size
        batch_size, length = input_ids.shape
        lengths = attention_mask.sum(-1)
        if window is None or int(lengths.max()) <= window:
            sequence_output, attention = self._encoder_forward(input_ids, attention_mask, need_attention)
            entity_attention = None
            if need_attention:
                selection = _mention_selection(mention_index, length, attention.dtype)
                entity_attention = torch.einsum("bel,bhlk->behk", selection, attention)
            return EncodedDocuments(sequence_output, entity_attention)
        return self._encode_windows(input_ids, attention_mask, mention_index, lengths.tolist(), need_attention)

    def _encode_windows(self, input_ids, attention_mask, mention_index, lengths, need_attention):
        config = self.config
        device = input_ids.device
        batch_size, length = input_ids.shape
        prefix, suffix = config.window_prefix_tokens, config.window_suffix_tokens
        plan = plan_windows(lengths, config.effective_window_size, config.effective_window_stride, prefix, suffix)
        doc, start, content = (torch.tensor(column, device=device)[:, None] for column in zip(*plan))
        doc_length = torch.as_tensor(lengths, device=device)[doc]  # [N, 1]
        doc_content = doc_length - prefix - suffix
        window_length = int((content + prefix + suffix).max())
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

        window_ids = input_ids[doc, source]
        pad_id = self.config.encoder.pad_token_id
        window_ids = window_ids.masked_fill(~in_window, pad_id if pad_id is not None else 0)
        window_mask = in_window.to(attention_mask.dtype).expand_as(window_ids)
        hidden, attention = self._encoder_forward(window_ids, window_mask, need_attention)

        # Hidden states: sum over windows into the document, divided by how many windows kept each token.
        target = torch.where(keep, doc * (length + 1) + source, doc * (length + 1) + length).reshape(-1)
        hidden_size = hidden.shape[-1]
        summed = hidden.new_zeros(batch_size * (length + 1), hidden_size).index_add(0, target, hidden.reshape(-1, hidden_size))
        counts = hidden.new_zeros(batch_size * (length + 1)).index_add(0, target, keep.to(hidden.dtype).expand_as(window_ids).reshape(-1))
        sequence_output = (summed / counts.clamp(min=1)[:, None]).view(batch_size, length + 1, hidden_size)[:, :length]
        if not need_attention:
            return EncodedDocuments(sequence_output, None)

        # Attention: renormalise each window's rows over the columns it keeps (windows that are the whole document
        # keep everything and are left untouched), then average each mention's rows over the windows holding it.
        whole = (first & last)[:, :, None, None]
        kept = attention * keep[:, None, None, :].to(attention.dtype)
        row_sum = kept.sum(-1, keepdim=True)
        attention = torch.where(whole, attention, kept / row_sum.clamp(min=torch.finfo(row_sum.dtype).tiny))

        window_mentions = mention_index[doc[:, 0]]  # [N, E, M]
        local_mention = window_mentions - start[:, :, None]
        inside = (window_mentions >= 0) & (local_mention >= prefix) & (local_mention < prefix + content[:, :, None])
        windows_per_mention = torch.zeros_like(mention_index).index_add(0, doc[:, 0], inside.to(mention_index.dtype))
        mentions_per_entity = (mention_index >= 0).sum(-1, keepdim=True).clamp(min=1)
        share = windows_per_mention[doc[:, 0]].clamp(min=1) * mentions_per_entity[doc[:, 0]]
        weights = inside.to(attention.dtype) / share.to(attention.dtype)
        selection = torch.zeros(*window_mentions.shape[:2], window_length + 1, dtype=attention.dtype, device=device)
        selection.scatter_add_(2, torch.where(inside, local_mention, torch.full_like(local_mention, window_length)), weights)
        window_entity_attention = torch.einsum("new,nhwk->nehk", selection[..., :window_length], attention)

        num_entities, num_heads = window_entity_attention.shape[1:3]
        flat = window_entity_attention.permute(1, 2, 0, 3).reshape(num_entities, num_heads, -1)
        entity_attention = flat.new_zeros(num_entities, num_heads, batch_size * (length + 1)).index_add(2, target, flat)
        entity_attention = entity_attention.view(num_entities, num_heads, batch_size, length + 1)[..., :length]
        return EncodedDocuments(sequence_output, entity_attention.permute(2, 0, 1, 3))

    def pool_entities(self, sequence_output, mention_index):
        """Entity embeddings [B, E, D] from the hidden states of their mentions' start tokens."""
        valid = mention_index >= 0
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

    def forward(
        self,
        input_ids,
        attention_mask=None,
        mention_index=None,
        pair_index=None,
        labels=None,
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
            output_context_weights (`bool`): also return the LOP weights [B, P, L].
        Returns:
            [`DocREModelOutput`]
        """
        if mention_index is None or pair_index is None:
            raise ValueError("DocREModel.forward needs `mention_index` [B, E, M] and `pair_index` [B, P, 2].")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        config = self.config
        use_context = config.use_context_pooling
        encoded = self.encode(input_ids, attention_mask, mention_index, need_attention=use_context)
        sequence_output = encoded.sequence_output

        entity_embeddings = self.pool_entities(sequence_output, mention_index)  # [B, E, D]
        pair_mask = (pair_index[..., 0] >= 0) & (pair_index[..., 1] >= 0)  # [B, P]
        heads = pair_index[..., 0].clamp(min=0)
        tails = pair_index[..., 1].clamp(min=0)
        batch_index = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None]
        head_embeddings = entity_embeddings[batch_index, heads]  # [B, P, D]
        tail_embeddings = entity_embeddings[batch_index, tails]

        context_weights = None
        if use_context:
            entity_attention = encoded.entity_attention  # [B, E, H, L]
            num_entities = entity_attention.shape[1]
            # q[b, s, o, l] = sum_h A_s[h, l] * A_o[h, l] for every entity pair, then the pairs asked for.
            pair_attention = torch.einsum("bshl,bohl->bsol", entity_attention, entity_attention)
            pair_attention = pair_attention.flatten(1, 2)[batch_index, heads * num_entities + tails]  # [B, P, L]
            pair_attention = pair_attention * pair_mask[..., None].to(pair_attention.dtype)
            # In a long document, entities that share no window have attention rows with disjoint support: q is 0
            # everywhere and such a pair gets no localized context (c = 0) rather than a division by zero.
            total = pair_attention.sum(-1, keepdim=True)
            context_weights = pair_attention / torch.where(total > 0, total, torch.ones_like(total))
            context = torch.bmm(context_weights.to(sequence_output.dtype), sequence_output)  # [B, P, D]
            head_embeddings = torch.cat([head_embeddings, context], dim=-1)
            tail_embeddings = torch.cat([tail_embeddings, context], dim=-1)

        head_repr = torch.tanh(self.head_extractor(self.dropout(head_embeddings)))
        tail_repr = torch.tanh(self.tail_extractor(self.dropout(tail_embeddings)))
        # Only real pairs go through the (costly) bilinear.
        real_logits = self.bilinear(head_repr[pair_mask], tail_repr[pair_mask])
        logits = real_logits.new_full((*pair_mask.shape, config.num_relations), PAD_RELATION_LOGIT)
        logits[..., 0] = 0.0
        logits = logits.masked_scatter(pair_mask[..., None], real_logits)

        loss = pair_loss = None
        if labels is not None:
            labeled = pair_mask & (labels[..., 0] != -100)
            per_pair = PAIR_LOSSES[config.loss](real_logits, labels[pair_mask].float())
            pair_loss = per_pair.new_zeros(pair_mask.shape).masked_scatter(pair_mask, per_pair)
            pair_loss = pair_loss * labeled.to(pair_loss.dtype)
            loss = pair_loss.sum() / labeled.sum().clamp(min=1)

        return DocREModelOutput(
            loss=loss,
            logits=logits,
            context_weights=context_weights if output_context_weights else None,
            entity_embeddings=entity_embeddings if output_entity_embeddings else None,
            pair_loss=pair_loss,
        )

    # -- decoding ----------------------------------------------------------------------------------------------------

    def decode(self, logits):
        """[..., R] logits -> [..., R] bool predictions (column 0 = NA), with the config's threshold and top-k."""
        config = self.config
        return decode_relations(
            logits,
            loss=config.loss,
            global_threshold=config.global_threshold,
            max_relations_per_pair=config.max_relations_per_pair,
        )


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


def _window_size(tokenizer, encoder_config):
    limits = []
    model_max = getattr(tokenizer, "model_max_length", None)
    if model_max is not None and model_max < 1_000_000:
        limits.append(int(model_max))
    max_positions = getattr(encoder_config, "max_position_embeddings", None)
    if max_positions is not None:
        if getattr(encoder_config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            max_positions -= (encoder_config.pad_token_id or 0) + 1
        limits.append(int(max_positions))
    return min(limits) if limits else None
