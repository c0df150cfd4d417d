"""Encoding documents of any length, and what the pair heads read from the encoding.

- `plan_windows`: a long document as overlapping windows of the encoder's size.
- `DocumentEncoderMixin.encode`: hidden states [B, L, D] for documents of any length (windows averaged where they
  overlap) and, for localized context pooling, the entities' last-layer attention [B, E, H, L], computed for the
  mentions' rows only; which entity pairs share a window.
- `DocumentEncoderMixin.pool_entities`: entity embeddings [B, E, D] from their mentions.
- `DocumentEncoderMixin.localized_context`: ATLOP's localized context pooling for a set of pairs.

The mixin needs `self.encoder` and `self.config` (a `DocREConfig`): every DocRE model class has them, so the
relation-extraction and pre-training models encode the same way.

Loaded through ``trust_remote_code``: flat sibling, torch and transformers only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .layers_docre import LAST_LAYER_ATTENTION

# Localized context pooling computes q for one chunk of head entities against all entities at a time: at most this
# many elements ([C, E, L]); a document that is short or has few entities is one chunk.
LOCALIZED_CONTEXT_CHUNK_ELEMENTS = 1 << 24


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


def plan_windows(lengths: Sequence[int], window_size: int, stride: int, prefix: int, suffix: int) -> list[tuple[int, int, int]]:
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


def _average_over_windows(hidden, target, keep, batch_size, length):
    """Window hidden states [N, W, D] -> document hidden states [B, L, D], each token the mean over the windows that
    keep it. `target` [N * W]: the flat position `doc * (L + 1) + token` of each window position (`L` for dropped
    ones); `keep` [N, W] bool."""
    hidden_size = hidden.shape[-1]
    summed = hidden.new_zeros(batch_size * (length + 1), hidden_size).index_add(0, target, hidden.reshape(-1, hidden_size))
    counts = hidden.new_zeros(batch_size * (length + 1)).index_add(0, target, keep.to(hidden.dtype).reshape(-1))
    return (summed / counts.clamp(min=1)[:, None]).view(batch_size, length + 1, hidden_size)[:, :length]


class DocumentEncoderMixin:
    """Encoding of documents of any length, entity pooling and localized context pooling (see the module doc)."""

    def _encoder_forward(self, input_ids, attention_mask, attention_rows=None, encoder=None):
        """Run the encoder (`self.encoder` unless another is given) once. Returns hidden states [N, W, D] and, when
        `attention_rows` ([N, Q] positions) is given, the last layer's attention of those rows [N, H, Q, W]."""
        encoder = self.encoder if encoder is None else encoder
        layers = getattr(self.config, "context_layers", 1)
        hidden_kwargs = {"output_hidden_states": True} if layers > 1 else {}

        def hidden_states(outputs):  # the mean of the last `context_layers` layers (DREEAM's released code: 3)
            if layers == 1:
                return outputs.last_hidden_state
            return torch.stack(outputs.hidden_states[-layers:]).mean(0)

        def attention_mean(attentions):
            return attentions[-1] if layers == 1 else torch.stack(attentions[-layers:]).mean(0)

        if attention_rows is None:
            outputs = encoder(input_ids=input_ids, attention_mask=attention_mask, **hidden_kwargs)
            return hidden_states(outputs), None
        if encoder.config._attn_implementation == LAST_LAYER_ATTENTION:
            outputs = encoder(
                input_ids=input_ids, attention_mask=attention_mask, output_attentions=True,
                docre_attention_rows=attention_rows, docre_attention_layers=layers, **hidden_kwargs,
            )
            return hidden_states(outputs), attention_mean(outputs.attentions)
        # Encoders without attention functions: eager everywhere, then keep the rows asked for.
        outputs = encoder(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True, **hidden_kwargs)
        attention = attention_mean(outputs.attentions)
        index = attention_rows[:, None, :, None].expand(-1, attention.shape[1], -1, attention.shape[-1])
        return hidden_states(outputs), attention.gather(2, index)

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

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mention_index: torch.Tensor,
        need_attention: bool = True,
        encoder: nn.Module | None = None,
    ) -> EncodedDocuments:
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
        if getattr(config, "long_input", "windows") == "two_windows":
            return self._encode_two_windows(input_ids, mention_index, lengths, need_attention, encoder)
        return self._encode_windows(input_ids, mention_index, lengths, need_attention, encoder)

    def _two_window_plan(self, input_ids, lengths):
        """The released code's windows (`long_input="two_windows"`): [(document, token ids, first kept window
        position, end of the kept positions, document position of window position 0)]."""
        config = self.config
        window = config.effective_window_size
        prefix, suffix = config.window_prefix_tokens, config.window_suffix_tokens
        plan = []
        for b, length in enumerate(lengths):
            ids = input_ids[b, :length]
            if length <= window:
                plan.append((b, ids, 0, length, 0))
                continue
            if config.window_end_token_ids is not None:
                end = torch.tensor(config.window_end_token_ids, dtype=ids.dtype, device=ids.device)
            else:
                end = ids[length - suffix :]
            covered = window - len(end)  # the first window keeps [0, covered): its start, not its end tokens
            plan.append((b, torch.cat([ids[:covered], end]), 0, covered, 0))
            last_start = length - window + prefix  # the last window keeps [last_start, length): not its prefix
            capacity = window - prefix - len(end)
            while covered < last_start:  # only past twice the window: the released code never gets here
                start = max(prefix, covered - capacity // 2)
                plan.append((b, torch.cat([ids[:prefix], ids[start : start + capacity], end]), prefix, prefix + capacity, start - prefix))
                covered = start + capacity
            plan.append((b, torch.cat([ids[:prefix], ids[last_start:length]]), prefix, window, last_start - prefix))
        return plan

    def _encode_two_windows(self, input_ids, mention_index, lengths, need_attention, encoder=None):
        """`long_input="two_windows"`: the released ATLOP/DREEAM/KD-DocRE encoding of long documents. Hidden states
        are averaged over the windows that keep a token; a mention's attention rows are summed over the windows
        that keep it (each over the columns that window keeps) and renormalised; an entity's row is the mean of its
        mentions'."""
        device = input_ids.device
        batch_size, length = input_ids.shape
        num_entities = mention_index.shape[1]
        plan = self._two_window_plan(input_ids, lengths)
        window_lengths = [len(ids) for _, ids, _, _, _ in plan]
        width = max(window_lengths)
        pad_id = self.config.encoder.pad_token_id
        window_ids = input_ids.new_full((len(plan), width), pad_id if pad_id is not None else 0)
        for w, (_, ids, _, _, _) in enumerate(plan):
            window_ids[w, : len(ids)] = ids
        doc, low, high, offset = (torch.tensor(column, device=device) for column in
                                  ([p[0] for p in plan], [p[2] for p in plan], [p[3] for p in plan], [p[4] for p in plan]))
        local = torch.arange(width, device=device)[None, :]
        keep = (local >= low[:, None]) & (local < high[:, None])  # [N, W]
        target = torch.where(keep, doc[:, None] * (length + 1) + local + offset[:, None], doc[:, None] * (length + 1) + length)

        mention_batch, mention_entity, mention_slot = (mention_index >= 0).nonzero(as_tuple=True)  # K mentions
        position = mention_index[mention_batch, mention_entity, mention_slot]
        window_position = position[None, :] - offset[:, None]  # [N, K]
        inside = (doc[:, None] == mention_batch[None, :]) & (window_position >= low[:, None]) & (window_position < high[:, None])
        entity_in_window = torch.zeros(len(plan), num_entities, device=device)
        hit_window, hit_mention = inside.nonzero(as_tuple=True)
        entity_in_window[hit_window, mention_entity[hit_mention]] = 1.0
        by_document = entity_in_window.new_zeros(batch_size, len(plan), num_entities)
        by_document[doc, torch.arange(len(plan), device=device)] = entity_in_window
        shared_window = torch.bmm(by_document.transpose(1, 2), by_document) > 0  # [B, E, E]

        rows = slot_mention = slot_valid = None
        if need_attention:
            num_slots = max(1, int(inside.sum(-1).max()))
            slot_mention = torch.argsort((~inside).to(torch.int8), dim=1, stable=True)[:, :num_slots]  # [N, Q]: k
            slot_valid = inside.gather(1, slot_mention)
            rows = window_position.gather(1, slot_mention).masked_fill(~slot_valid, 0)
        hidden, row_attention = self._encode_bucketed(window_ids, window_lengths, rows, encoder)

        sequence_output = _average_over_windows(hidden, target.reshape(-1), keep, batch_size, length)
        if not need_attention:
            return EncodedDocuments(sequence_output, None, shared_window)

        # Each kept column of each valid slot's row goes to (its mention, the column's document position).
        num_mentions, num_heads = len(position), row_attention.shape[1]
        slot_target = torch.where(slot_valid, slot_mention, torch.full_like(slot_mention, num_mentions))  # K = dump
        column = torch.where(keep, local + offset[:, None], torch.full_like(target, length))  # [N, W] in the document
        index = slot_target[:, :, None] * (length + 1) + column[:, None, :]  # [N, Q, W]
        values = (row_attention * keep[:, None, None, :].to(row_attention.dtype)).permute(0, 2, 3, 1)  # [N, Q, W, H]
        mention_rows = values.new_zeros((num_mentions + 1) * (length + 1), num_heads).index_add(
            0, index.reshape(-1), values.reshape(-1, num_heads)
        ).view(num_mentions + 1, length + 1, num_heads)[:num_mentions, :length]  # [K, L, H]
        mention_rows = mention_rows / (mention_rows.sum(1, keepdim=True) + 1e-10)
        per_entity = (mention_index >= 0).sum(-1).clamp(min=1)[mention_batch, mention_entity].to(mention_rows.dtype)
        entity_attention = mention_rows.new_zeros(batch_size * num_entities, length, num_heads).index_add(
            0, mention_batch * num_entities + mention_entity, mention_rows / per_entity[:, None, None]
        )
        entity_attention = entity_attention.view(batch_size, num_entities, length, num_heads).permute(0, 1, 3, 2)
        return EncodedDocuments(sequence_output, entity_attention.contiguous(), shared_window)

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
        sequence_output = _average_over_windows(hidden, target, keep.expand_as(window_ids), batch_size, length)
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

    def pool_entities(self, sequence_output: torch.Tensor, mention_index: torch.Tensor, mention_end: torch.Tensor | None = None) -> torch.Tensor:
        """Entity embeddings [B, E, D] from the hidden states of their mentions' start tokens, or with
        `mention_representation="span"` the mean of every token of every mention ([mention_index, mention_end))."""
        valid = mention_index >= 0
        if self.config.max_pooled_mentions is not None:  # DSDocRE's released code pools the first 3 mentions only
            valid = valid & (torch.arange(mention_index.shape[-1], device=mention_index.device) < self.config.max_pooled_mentions)
            mention_index = mention_index.masked_fill(~valid, -1)
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

        q = sum over heads of A_s * A_o; a = q / sum(q) (or q / (sum(q) + heads * `config.context_epsilon`), the
        released code's normaliser); c = H^T a. In a long document, entities that share no
        window have attention with (almost) disjoint support, so q is 0 or nearly. Pairs marked in `own_context`
        ([N] bool; `distant_pairs="entity_context"`) take instead the mean of the two entities' own attention,
        a = (mean_h A_s + mean_h A_o) / 2; other pairs with q = 0 get no context (a = c = 0).

        q is computed document by document for a chunk of head entities against all entities at a time ([C, E, L],
        at most `LOCALIZED_CONTEXT_CHUNK_ELEMENTS`), so memory does not grow with E x E x L on long documents.
        """
        num_entities, num_heads, length = entity_attention.shape[1], entity_attention.shape[2], entity_attention.shape[-1]
        epsilon = float(getattr(self.config, "context_epsilon", 0.0) or 0.0)
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
                if epsilon:  # the released code's a = mean_h(q) / (sum(mean_h(q)) + eps), with q summed over heads here
                    weights = q / (total + epsilon * num_heads)
                else:
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
