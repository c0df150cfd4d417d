"""A naive ATLOP-structured forward pass, used as the baseline in benchmarks (same weights, same maths).

It follows the structure of the original research code as the paper describes it: eager attention with weights in
every encoder layer, Python loops over documents and entities for mention pooling and entity attention, per-document
gathers of [P, H, L] attention for the pairs, and the group bilinear as one [P, emb_size * block_size] outer product
followed by a linear layer. Documents must fit one encoder window.

It uses a `DocREModel`'s own parameters, so its logits must equal the model's (tests/test_benchmark_reference.py
checks this); the benchmark then compares like with like.
"""

import torch


def naive_forward(model, input_ids, attention_mask, mention_index, pair_index):
    """Returns logits [B, P, R] like `DocREModel.forward(...).logits` (padded pairs: whatever the model sets)."""
    config = model.config
    encoder = model.encoder
    previous = encoder.config._attn_implementation
    encoder.set_attn_implementation("eager")
    try:
        outputs = encoder(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
    finally:
        encoder.set_attn_implementation(previous)
    sequence_output = outputs.last_hidden_state
    attention = outputs.attentions[-1]  # [B, H, L, L]; every layer's weights were materialised

    all_logits = []
    for b in range(input_ids.shape[0]):
        entity_embeddings, entity_attention = [], []
        for mentions in mention_index[b]:
            positions = [int(p) for p in mentions if p >= 0]
            if not positions:
                continue
            embeddings = torch.stack([sequence_output[b, p] for p in positions])
            rows = torch.stack([attention[b, :, p] for p in positions])
            if config.mention_pooling == "logsumexp":
                entity_embeddings.append(torch.logsumexp(embeddings, dim=0))
            elif config.mention_pooling == "max":
                entity_embeddings.append(embeddings.max(0).values)
            else:
                entity_embeddings.append(embeddings.mean(0))
            entity_attention.append(rows.mean(0))
        pairs = pair_index[b][pair_index[b, :, 0] >= 0]
        logits = torch.zeros(pair_index.shape[1], config.num_relations)
        logits[:, 1:] = -1e4
        if len(pairs) == 0:
            all_logits.append(logits)
            continue
        entity_embeddings = torch.stack(entity_embeddings)
        entity_attention = torch.stack(entity_attention)  # [E, H, L]
        heads = entity_embeddings.index_select(0, pairs[:, 0])
        tails = entity_embeddings.index_select(0, pairs[:, 1])
        if config.use_context_pooling:
            head_attention = entity_attention.index_select(0, pairs[:, 0])  # [P, H, L]
            tail_attention = entity_attention.index_select(0, pairs[:, 1])
            q = (head_attention * tail_attention).sum(1)
            total = q.sum(-1, keepdim=True)
            a = q / torch.where(total > 0, total, torch.ones_like(total))
            context = a @ sequence_output[b]
            heads = torch.cat([heads, context], dim=-1)
            tails = torch.cat([tails, context], dim=-1)
        z_head = torch.tanh(model.head.head_extractor(heads))
        z_tail = torch.tanh(model.head.tail_extractor(tails))
        groups = config.emb_size // config.block_size
        b1 = z_head.view(-1, groups, config.block_size)
        b2 = z_tail.view(-1, groups, config.block_size)
        outer = (b1.unsqueeze(3) * b2.unsqueeze(2)).view(-1, config.emb_size * config.block_size)
        logits[: len(pairs)] = outer @ model.head.bilinear.weight.t() + model.head.bilinear.bias
        all_logits.append(logits)
    return torch.stack(all_logits)
