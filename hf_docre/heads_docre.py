"""Pair heads: entity embeddings (+ a localized context) of the scored pairs -> relation logits.

Every head follows one contract, [`PairHead`]: `forward(pairs: PairInputs) -> [N, R]` logits for the N pairs the
model scores (column 0 = the NA/threshold class). A head says whether it reads a localized context
(`uses_context`); the model computes the context only then. Heads are found by name in `PAIR_HEADS`;
`register_pair_head` adds one, and `DocREConfig(pair_head=<name>)` selects it.

| name | paper | what it is |
| --- | --- | --- |
| `bilinear` | Wang et al. 2019 | projection of each entity to `emb_size`, then a full bilinear layer |
| `group_bilinear` | Zhou et al. 2021 (ATLOP) | head/tail extractors over [entity; context], group bilinear |
| `axial` | Tan et al. 2022 (KD-DocRE) | ATLOP's group bilinear to `pair_hidden_size` features, axial attention over the entity-pair table, linear classifier |
| `axial_released` | KD-DocRE's released code | bias-free projection, 6 layers of 8-head axial attention over a padded 42 x 42 table |
| `two_step` | Wang et al. 2019 | composite: step 1 (relation or not) with its own encoder, step 2 (which relations) the `bilinear` head |
| `dreeam` | Ma et al. 2023 (DREEAM) | `group_bilinear`, plus a loss that guides the localized-context attention to the evidence sentences |
| `bilinear_relation` | Xiao et al. 2020 (DSDocRE) | Bilinear_E(e_h, e_t) to `emb_size` features (each entity projected once), linear classifier |

Loaded through ``trust_remote_code``: flat sibling, torch and transformers only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .layers_docre import AxialPairAttention, EntityPairBilinear, GroupBilinear, PairBilinear, ReleasedAxialNetwork


@dataclass
class PairInputs:
    """What a pair head reads, for the N pairs the model scores.

    Args:
        entity_embeddings: [B, E, D] pooled entity embeddings (dropout applied).
        pair_batch, heads, tails: [N] the document, head entity and tail entity of each scored pair.
        context: [N, D] the pairs' localized context (dropout applied), or None when the head does not use one.
        encode_entities: `encode_entities(encoder) -> [B, E, D]` runs another encoder over the same inputs and pools
            its entities (a composite head with an encoder of its own uses it).
        context_of: `context_of(pair_batch, heads, tails) -> [n, D]`, the localized context (dropout applied) of any
            pairs, for heads that read more pairs than the scored ones (the released KD-DocRE table).
        num_entities: [B] the number of entities of each document.
        pair_slot: [N] the position of each scored pair in the batch's pair table ([B, P]): `table[pair_batch,
            pair_slot]` reads a [B, P, ...] input for the scored pairs.
        context_weights: [N, L] the pairs' localized-context weights, for heads with `needs_context_weights`.
        extra: the batch fields the head asked for (`extra_inputs`) that the batch has.
    """

    entity_embeddings: torch.Tensor
    pair_batch: torch.Tensor
    heads: torch.Tensor
    tails: torch.Tensor
    context: torch.Tensor | None = None
    encode_entities: Callable[[nn.Module], torch.Tensor] | None = None
    context_of: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    num_entities: torch.Tensor | None = None
    pair_slot: torch.Tensor | None = None
    context_weights: torch.Tensor | None = None
    extra: dict | None = None

    def head_and_tail(self, entities: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, D] head and tail rows of `entities` ([B, E, D], default `entity_embeddings`)."""
        entities = self.entity_embeddings if entities is None else entities
        return entities[self.pair_batch, self.heads], entities[self.pair_batch, self.tails]


class PairHead(nn.Module):
    """Base class of the pair heads. Subclasses build their layers from a `DocREConfig` and implement `forward`.

    Args:
        config: the model's `DocREConfig`.
        new_encoder: `new_encoder()` builds an encoder like the model's (for heads that own one).
    """

    uses_context = False  # whether `forward` reads `pairs.context` (localized context pooling)
    needs_context_weights = False  # whether the head reads `pairs.context_weights` (the LOP weights [N, L])
    extra_inputs: tuple = ()  # batch fields (model.forward keywords) the head reads, passed in `pairs.extra`
    # The head's own hyper-parameters, {name: default}: `DocREConfig(name=...)` or a method preset sets them, the
    # saved config.json keeps them, and `self.option(name)` reads them. Each value must be of its default's type.
    options: dict = {}
    # The method's description and citation for model cards (None: the method registry's).
    card_description: str | None = None

    def __init__(self, config, new_encoder: Callable[[], nn.Module] | None = None):
        super().__init__()
        self.config = config

    @classmethod
    def resolve_options(cls, config) -> None:
        """Write the head's `options` not yet in `config` (their defaults) into it, and check the types of all of
        them; a ValueError names the option."""
        for name, default in cls.options.items():
            if getattr(config, name, None) is None:
                setattr(config, name, default)
            value = getattr(config, name)
            numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and value == value) if numeric \
                else isinstance(value, type(default))
            if not ok:
                raise ValueError(f"DocREConfig: `{name}` (an option of the pair head `{config.head_type}`) must be "
                                 f"{'a number' if numeric else type(default).__name__}, got {value!r}.")

    def option(self, name: str):
        """The value of one of the head's `options` in its config."""
        return getattr(self.config, name, self.options[name])

    def forward(self, pairs: PairInputs) -> torch.Tensor:  # pragma: no cover - abstract
        """[N, R] relation logits of the scored pairs."""
        raise NotImplementedError

    @classmethod
    def describe(cls, config) -> str:
        """What the head is and how it trains, for model cards."""
        return f"the registered pair head `{config.head_type}`, {config.loss} loss"

    @classmethod
    def decoding(cls, config) -> str:
        """How its logits become relations (`decoding_docre.decode_relations`): by default what `config.loss`
        trains them for."""
        from .losses_docre import LOSS_DECODING

        return LOSS_DECODING[config.loss]

    def relation_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[N, R] logits x [N, R] labels -> [N] the relation loss of each pair: `config.loss` by default."""
        from .losses_docre import relation_loss_fn

        return relation_loss_fn(self.config, self.training)(logits, labels)

    def auxiliary_losses(self, pairs: PairInputs, logits: torch.Tensor, labels: torch.Tensor | None) -> dict:
        """Loss terms the head adds to the relation loss, each a scalar already weighted and reduced over this batch
        (`{}` by default). `labels` is [N, R] for the scored pairs, or None without labels."""
        return {}

    def outputs(self, pairs: PairInputs, logits: torch.Tensor) -> dict:
        """Per-pair outputs the head adds, each [N, ...] (the model returns them as [B, P, ...] in `head_outputs`)."""
        return {}

    def encoders(self) -> list[nn.Module]:
        """Encoders the head owns (their parameters train at the encoder's learning rate)."""
        return []


class BilinearPairHead(PairHead):
    """Wang et al. 2019: a linear projection of each entity to `emb_size`, then a full bilinear layer over
    (head, tail) to R logits."""

    def __init__(self, config, new_encoder=None):
        super().__init__(config, new_encoder)
        hidden = config.encoder.hidden_size
        self.projection = nn.Linear(hidden, config.emb_size)
        self.bilinear = PairBilinear(config.emb_size, config.emb_size, config.num_relations)

    @classmethod
    def describe(cls, config):
        return (f"mean of the mentions' tokens, projection to {config.emb_size}, bilinear classifier, binary "
                f"cross-entropy, global threshold {config.global_threshold:g}")

    def forward(self, pairs):
        projected = self.projection(pairs.entity_embeddings)  # [B, E, emb_size]: once per entity, not per pair
        return self.bilinear(*pairs.head_and_tail(projected))


class GroupBilinearPairHead(PairHead):
    """ATLOP (Zhou et al. 2021, Eq. 5-6): z_s = tanh(W_s [e_s; c] + b_s), z_o likewise, then a group bilinear
    to `num_outputs` features (R logits, or the pair representation of a head built on it)."""

    def __init__(self, config, new_encoder=None, num_outputs: int | None = None, bias: bool = True):
        super().__init__(config, new_encoder)
        hidden = config.encoder.hidden_size
        context = hidden if config.use_context_pooling else 0
        self.head_extractor = nn.Linear(hidden + context, config.emb_size)
        self.tail_extractor = nn.Linear(hidden + context, config.emb_size)
        self.bilinear = GroupBilinear(config.emb_size, config.block_size, num_outputs or config.num_relations, bias=bias)

    @property
    def uses_context(self):
        return bool(self.config.use_context_pooling)

    @classmethod
    def describe(cls, config):
        loss = (f"adaptive focal loss (gamma {config.focal_gamma:g}, {config.focal_positive_weight} positive weight)"
                if config.loss == "afl" else f"{config.loss} loss")
        return (f"{config.mention_pooling} mention pooling, localized context pooling {'on' if config.use_context_pooling else 'off'}, "
                f"group bilinear {config.emb_size}/{config.block_size}{cls.describe_pair_layers(config)}, {loss}")

    @classmethod
    def describe_pair_layers(cls, config):
        """What a head built on the group bilinear adds after it (for `describe`)."""
        return ""

    def forward(self, pairs):
        return self.pair_features(pairs.entity_embeddings, pairs.pair_batch, pairs.heads, pairs.tails, pairs.context)

    def pair_features(self, entities, pair_batch, heads, tails, context):
        """Group bilinear of z_s = tanh(W_s [e_s; c] + b_s) and z_o for the pairs (pair_batch, heads, tails) ([N])."""
        # W [e; c] = W_entity e + W_context c: the entity half is computed once per entity, not once per pair.
        hidden = entities.shape[-1]
        head_entity = nn.functional.linear(entities, self.head_extractor.weight[:, :hidden])[pair_batch, heads]
        tail_entity = nn.functional.linear(entities, self.tail_extractor.weight[:, :hidden])[pair_batch, tails]
        head_repr = head_entity + self.head_extractor.bias
        tail_repr = tail_entity + self.tail_extractor.bias
        if self.uses_context:
            head_repr = head_repr + nn.functional.linear(context, self.head_extractor.weight[:, hidden:])
            tail_repr = tail_repr + nn.functional.linear(context, self.tail_extractor.weight[:, hidden:])
        return self.bilinear(torch.tanh(head_repr), torch.tanh(tail_repr))


class AxialPairHead(GroupBilinearPairHead):
    """KD-DocRE (Tan et al. 2022, Eq. 7-8): ATLOP's group bilinear gives a pair representation g of
    `pair_hidden_size` features, axial attention refines it over the entity-pair table, a linear layer classifies."""

    def __init__(self, config, new_encoder=None):
        pair_hidden = config.pair_hidden_size or config.encoder.hidden_size
        super().__init__(config, new_encoder, num_outputs=pair_hidden)
        self.axial_attention = AxialPairAttention(pair_hidden)
        self.classifier = nn.Linear(pair_hidden, config.num_relations)

    @classmethod
    def describe_pair_layers(cls, config):
        return (f", axial attention over the entity-pair table ({config.pair_hidden_size or config.encoder.hidden_size} "
                "features), linear classifier")

    def forward(self, pairs):
        pair_repr = super().forward(pairs)  # [N, pair_hidden]
        batch_size, num_entities = pairs.entity_embeddings.shape[:2]
        pair_repr = self.axial_attention(pair_repr, pairs.pair_batch, pairs.heads, pairs.tails, batch_size, num_entities)
        return self.classifier(pair_repr)


def evidence_distribution_loss(sentence_shares: torch.Tensor, evidence_counts: torch.Tensor) -> torch.Tensor:
    """DREEAM's evidence loss (Ma et al. 2023, Eq. 5) per pair: KL(y || p), y the gold evidence sentences normalised
    (each relation of the pair counts its evidence once), p the pair's localized-context weight on each sentence.

    Args:
        sentence_shares: [N, S] p (rows sum to at most 1; the rest sits on special tokens).
        evidence_counts: [N, S] how many of the pair's relations name each sentence as evidence.
    Returns:
        [N] sum_s y_s (log y_s - log p_s), 0 for pairs without evidence.
    """
    counts = evidence_counts.to(sentence_shares.dtype)
    target = counts / counts.sum(-1, keepdim=True).clamp(min=1e-30)
    log_target = torch.log(target.clamp(min=1e-30))
    log_shares = torch.log(sentence_shares.clamp(min=1e-30))  # as the released code: p = 0 counts as 1e-30
    return torch.where(target > 0, target * (log_target - log_shares), torch.zeros_like(target)).sum(-1)


def token_distribution_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of two distributions over tokens, per pair ([N, L] x [N, L] -> [N]); zeros count as
    1e-30, as in the released DREEAM code."""
    teacher = teacher.to(student.dtype)
    log_teacher = torch.log(teacher.clamp(min=1e-30))
    return torch.where(teacher > 0, teacher * (log_teacher - torch.log(student.clamp(min=1e-30))), torch.zeros_like(teacher)).sum(-1)


class EvidenceGuidedPairHead(GroupBilinearPairHead):
    """DREEAM (Ma, Wang and Okazaki 2023): ATLOP's head, with its localized-context attention supervised by the
    evidence sentences. The evidence loss (`evidence_distribution_loss`, weight `evidence_weight`, the paper's
    lambda = 0.1) is the mean over the pairs that hold a relation (those without gold evidence add 0); the evidence of a predicted
    relation is the sentences whose share of the context exceeds `evidence_threshold` (the model's
    `evidence_scores`). No parameters beyond ATLOP's."""

    needs_context_weights = True
    extra_inputs = ("token_sentence", "evidence_labels", "teacher_evidence")
    # evidence_weight: the paper's lambda. teacher_evidence_weight: self-training, the weight of the loss to a
    # teacher's stored context weights (the released code's attn_lambda).
    options = {"evidence_weight": 0.1, "teacher_evidence_weight": 1.0}

    @classmethod
    def describe(cls, config):
        weight = getattr(config, "evidence_weight", cls.options["evidence_weight"])
        return (super().describe(config) + f", evidence loss (weight {weight:g}) guiding the localized "
                f"context to the evidence sentences, evidence = sentences above {config.evidence_threshold:g} of the context")

    def auxiliary_losses(self, pairs, logits, labels):
        extra = pairs.extra or {}
        gold, token_sentence = extra.get("evidence_labels"), extra.get("token_sentence")
        teacher = extra.get("teacher_evidence")
        if teacher is not None:
            # Self-training (the released code's attn_loss, which then ignores any gold evidence): on distant or
            # unlabelled documents the teacher's localized-context weights over the tokens supervise the student's, KL(teacher ||
            # student) averaged over the scored pairs, weight `teacher_evidence_weight`.
            target = teacher[pairs.pair_batch, pairs.pair_slot][:, : pairs.context_weights.shape[-1]]
            per_pair = token_distribution_loss(pairs.context_weights, target)
            return {"teacher_evidence_loss": self.option("teacher_evidence_weight") * per_pair.mean()} if len(per_pair) else {}
        if labels is None or gold is None or token_sentence is None:
            return {}
        from .modeling_docre import sentence_shares

        counts = gold[pairs.pair_batch, pairs.pair_slot]  # [N, S]
        shares = sentence_shares(pairs.context_weights, token_sentence[pairs.pair_batch], num_sentences=counts.shape[-1])
        # The mean runs over the pairs that hold a relation, as the released code's; one without gold evidence adds 0.
        used = (labels[:, 1:] > 0).any(-1)
        per_pair = evidence_distribution_loss(shares, counts)
        loss = (per_pair * used).sum() / used.sum().clamp(min=1)
        return {"evidence_loss": self.option("evidence_weight") * loss}


class ReleasedAxialPairHead(GroupBilinearPairHead):
    """KD-DocRE as its released code computes it (`axial_network="released"`), for its converted checkpoints: the
    group bilinear projects to the encoder's hidden size without bias (`projection`); every document's pair table is
    padded to `axial_table_size` entities (42) and filled everywhere: real pairs, the diagonal (an entity with itself)
    and padding cells (zero entity and context, so tanh of the extractors' biases); `ReleasedAxialNetwork` runs over
    the whole table with no mask, plus an outer residual; a linear classifier; the diagonal's logits are 0. Documents
    with more entities get a table of their own size (the released code stops at 42)."""

    def __init__(self, config, new_encoder=None):
        hidden = config.pair_hidden_size or config.encoder.hidden_size
        super().__init__(config, new_encoder, num_outputs=hidden, bias=False)
        self.axial_transformer = ReleasedAxialNetwork(hidden, config.axial_layers, config.axial_heads)
        self.classifier = nn.Linear(hidden, config.num_relations)

    @classmethod
    def describe_pair_layers(cls, config):
        return (f", axial attention over the entity-pair table ({config.pair_hidden_size or config.encoder.hidden_size} "
                f"features; the released code's network: {config.axial_layers} layers of {config.axial_heads}-head axial "
                f"attention over a table padded to {config.axial_table_size} entities), linear classifier")

    def forward(self, pairs):
        entities = pairs.entity_embeddings
        device = entities.device
        logits = []
        for b in range(entities.shape[0]):
            in_document = pairs.pair_batch == b
            if not in_document.any():
                continue
            num_entities = int(pairs.num_entities[b])
            size = max(self.config.axial_table_size, num_entities)
            cells = torch.arange(size * size, device=device)
            rows, columns = cells // size, cells % size
            real = (rows < num_entities) & (columns < num_entities)
            batch = torch.full_like(rows, b)
            context = None
            if self.uses_context:
                context = entities.new_zeros(size * size, entities.shape[-1])
                context[real] = pairs.context_of(batch[real], rows[real], columns[real])
            # Padding cells read a zero entity: index a zero row appended to the document's entities.
            padded = torch.cat([entities[b : b + 1, :num_entities], entities.new_zeros(1, 1, entities.shape[-1])], dim=1)
            table = self.pair_features(padded, torch.zeros_like(rows), rows.clamp(max=num_entities).masked_fill(~real, num_entities),
                                       columns.clamp(max=num_entities).masked_fill(~real, num_entities), context)
            table = table.view(1, size, size, -1)
            table = self.axial_transformer(table) + table
            document_logits = self.classifier(table)[0] * (rows != columns).view(size, size, 1).to(table.dtype)
            logits.append(document_logits[pairs.heads[in_document], pairs.tails[in_document]])
        return torch.cat(logits) if logits else entities.new_zeros(0, self.config.num_relations)


class TwoStepPairHead(BilinearPairHead):
    """Wang et al. 2019, two-step, as one composite head: step 2 (which relations) is the inherited bilinear head on
    the model's encoder; step 1 (relation or not) is another bilinear head on an encoder of its own (the paper trains
    two models), or on the model's encoder with `two_step_shared_encoder=True`. Column 0 of the logits is step 1's
    no-relation logit; the loss and decoding read it (`decoding="two_step"`)."""

    def __init__(self, config, new_encoder=None):
        super().__init__(config, new_encoder)
        hidden = config.encoder.hidden_size
        self.existence_encoder = None if config.two_step_shared_encoder else new_encoder()
        self.existence_projection = nn.Linear(hidden, config.emb_size)
        self.existence_bilinear = PairBilinear(config.emb_size, config.emb_size, 1)

    def encoders(self):
        return [self.existence_encoder] if self.existence_encoder is not None else []

    @classmethod
    def decoding(cls, config):
        return "two_step"

    def relation_loss(self, logits, labels):
        from .losses_docre import two_step_loss

        return two_step_loss(logits, labels, self.config.negative_sampling_ratio, sample=self.training)

    @classmethod
    def describe(cls, config):
        encoder = "the shared encoder" if config.two_step_shared_encoder else "its own encoder"
        return (f"mean of the mentions' tokens, projection to {config.emb_size}, bilinear classifier (twice: step 1 "
                f"relation / no relation with {encoder}, step 2 the relation types), binary cross-entropy, global "
                f"threshold {config.global_threshold:g}")

    def forward(self, pairs):
        relation_logits = super().forward(pairs)  # [N, R]; column 0 is replaced
        entities = pairs.entity_embeddings
        if self.existence_encoder is not None:
            entities = pairs.encode_entities(self.existence_encoder)
        exists = self.existence_bilinear(*pairs.head_and_tail(self.existence_projection(entities)))  # [N, 1]
        return torch.cat([-exists, relation_logits[:, 1:]], dim=-1)


class RelationBilinearPairHead(PairHead):
    """DSDocRE (Xiao et al. 2020, Sec. 3.1; the released fine-tuning code): the relation representation
    r = Bilinear_E(e_h, e_t) of `emb_size` features (256), no activation, then a linear layer to R logits. The
    bilinear projects each entity once ([`EntityPairBilinear`]), not each pair."""

    def __init__(self, config, new_encoder=None):
        super().__init__(config, new_encoder)
        hidden = config.encoder.hidden_size
        self.relation_bilinear = EntityPairBilinear(hidden, hidden, config.emb_size)
        self.classifier = nn.Linear(config.emb_size, config.num_relations)

    @classmethod
    def describe(cls, config):
        return (f"indexed entity markers, {config.mention_pooling} mention pooling, relation bilinear to {config.emb_size} "
                "features, linear classifier, binary cross-entropy over every relation and NA")

    def forward(self, pairs):
        relation = self.relation_bilinear.pairs(pairs.entity_embeddings, pairs.pair_batch, pairs.heads, pairs.tails)
        return self.classifier(relation)


PAIR_HEADS: dict[str, type[PairHead]] = {
    "bilinear_relation": RelationBilinearPairHead,
    "bilinear": BilinearPairHead,
    "group_bilinear": GroupBilinearPairHead,
    "axial": AxialPairHead,
    "axial_released": ReleasedAxialPairHead,
    "dreeam": EvidenceGuidedPairHead,
    "two_step": TwoStepPairHead,
}


def register_pair_head(name: str, head_class: type[PairHead], exist_ok: bool = False) -> None:
    """Make `DocREConfig(pair_head=name)` build `head_class`. Saved models need the class importable at load time
    (for remote code, define it in `heads_docre.py`)."""
    if not (isinstance(head_class, type) and issubclass(head_class, PairHead)):
        raise TypeError(f"register_pair_head: {head_class!r} is not a PairHead subclass")
    if name in PAIR_HEADS and not exist_ok:
        raise ValueError(f"register_pair_head: {name!r} is already registered (pass exist_ok=True to replace it)")
    PAIR_HEADS[name] = head_class


def build_pair_head(config, new_encoder: Callable[[], nn.Module]) -> PairHead:
    """The head `config.head_type` names."""
    name = config.head_type
    if name not in PAIR_HEADS:
        raise ValueError(f"DocREConfig: unknown pair head {name!r}; registered heads: {sorted(PAIR_HEADS)}")
    PAIR_HEADS[name].resolve_options(config)
    return PAIR_HEADS[name](config, new_encoder)
