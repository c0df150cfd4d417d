"""DSDocRE pre-training (Xiao et al. 2020, Sec. 3.2-3.3): the model beside the relation-extraction one, like
`BertForPreTraining` beside `BertModel`.

`DocREForDenoisingPreTraining` shares the encoder code and the `encoder` attribute with
`DocREForRelationExtraction`, so `DocREForRelationExtraction.from_pretrained(<pre-training folder>)` loads the
pre-trained encoder as its backbone (the pre-training heads are left out, as the authors' code does). With
`pretraining_tasks=["relation_detection"]` it is the pre-denoising ranker (Sec. 3.3), and `score_pairs` gives the
ranker's score s_n of any pairs.

Batch contract (documents in 2B rows; row b and row (b + B) mod 2B are partners, the document pair of one example):

| input | shape | meaning |
| --- | --- | --- |
| `input_ids`, `attention_mask`, `mention_index` | [2B, L], [2B, L], [2B, E, M] | as the relation-extraction model |
| `masked_mention_position` | [2B, K] | token of each masked mention (the mask token); -1 = none |
| `masked_mention_candidates`, `masked_mention_labels` | [2B, K, C], [2B, K] | entity ids of this document; gold slot, -100 = ignore |
| `cross_entity_query`, `cross_entity_candidates`, `cross_entity_labels` | [2B], [2B, C], [2B] | an entity here, entities of the partner; gold slot |
| `detection_pairs`, `detection_labels` | [2B, G, C, 2], [2B, G] | (head, tail) groups of one positive and NA pairs |
| `cross_detection_pairs`, `cross_detection_labels` | [B, G, C, 3], [B, G] | (side, head, tail); side 0 = row b, 1 = row b + B |
| `alignment_query`, `alignment_candidates`, `alignment_labels` | [2B, 2], [2B, C, 2], [2B] | a pair here, pairs of the partner |
| `document_side` | [2B], *optional* | the side each row's terms average in (default: the first half 0, the second 1); the ranker's batches are one side |

Every task is a softmax over its candidates with cross-entropy (Eq. 1-4); each task's loss is, per side (row half or
direction), the mean over its valid rows, summed over the sides (the released code's two calls), 0 when no row is
valid. The total is the weighted sum (Eq. 5, weights 1).

Loaded through ``trust_remote_code``: flat sibling, torch and transformers only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from .configuration_docre import PRETRAINING_TASKS, DocREConfig
from .layers_docre import EntityPairBilinear
from .modeling_docre import DocREPreTrainedModel

_RELATION_TASKS = ("relation_detection", "cross_relation_detection", "relation_alignment")
_MATCHING_TASKS = ("mention_matching", "cross_mention_matching")


def candidate_pair_count(num_entities: int, per_entity: int = 2, cap: int | None = 60) -> int:
    """Pairs a document keeps for fine-tuning and evaluation: per_entity x N_entities (paper), capped at `cap`
    (released code: 60), and at most every ordered pair."""
    count = num_entities * per_entity if cap is None else min(num_entities * per_entity, cap)
    return max(0, min(count, num_entities * (num_entities - 1)))


@dataclass
class DocREPreTrainingOutput(ModelOutput):
    """Output of [`DocREForDenoisingPreTraining`].

    Args:
        loss (`torch.FloatTensor` of shape `()`): the weighted sum of the task losses.
        mention_matching_loss, cross_mention_matching_loss, relation_detection_loss, cross_relation_detection_loss,
        relation_alignment_loss (`torch.FloatTensor` of shape `()`, *optional*): each task's loss (None when the task
            is off or its inputs are missing).
        mention_matching_logits (`[2B, K, C]`), cross_mention_matching_logits (`[2B, C]`),
        relation_detection_logits (`[2B, G, C]`), cross_relation_detection_logits (`[B, G, C]`),
        relation_alignment_logits (`[2B, C]`): the candidates' scores.
    """

    loss: torch.FloatTensor | None = None
    mention_matching_loss: torch.FloatTensor | None = None
    cross_mention_matching_loss: torch.FloatTensor | None = None
    relation_detection_loss: torch.FloatTensor | None = None
    cross_relation_detection_loss: torch.FloatTensor | None = None
    relation_alignment_loss: torch.FloatTensor | None = None
    mention_matching_logits: torch.FloatTensor | None = None
    cross_mention_matching_logits: torch.FloatTensor | None = None
    relation_detection_logits: torch.FloatTensor | None = None
    cross_relation_detection_logits: torch.FloatTensor | None = None
    relation_alignment_logits: torch.FloatTensor | None = None


def side_mean_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, sides: torch.Tensor) -> torch.Tensor:
    """Sum over sides of the mean cross-entropy of that side's valid rows (label != -100); 0 with a finite
    gradient when a side has none.

    Args:
        logits: [..., C]; labels: [...] gold slot or -100; sides: [...] side id (0 or 1) of each row.
    """
    logits, labels, sides = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), sides.reshape(-1)
    valid = labels != -100
    per_row = nn.functional.cross_entropy(logits.float(), labels.clamp(min=0), reduction="none") * valid
    total = logits.new_zeros((), dtype=torch.float32)
    for side in (0, 1):
        in_side = (sides == side) & valid
        total = total + per_row[sides == side].sum() / in_side.sum().clamp(min=1)
    return total


class DenoisingPreTrainingHeads(nn.Module):
    """The pre-training layers (only those the configured tasks use): Bilinear_E (relation representation), w_n
    (relation detection score, Eq. 3), w_s (alignment score, Eq. 4) and Bilinear_M (mention-entity score, Eq. 1-2)."""

    def __init__(self, config: DocREConfig):
        super().__init__()
        hidden, size = config.encoder.hidden_size, config.pretraining_relation_size
        tasks = set(config.pretraining_tasks)
        self.relation_bilinear = EntityPairBilinear(hidden, hidden, size) if tasks & set(_RELATION_TASKS) else None
        self.detection_score = nn.Linear(size, 1) if tasks & {"relation_detection", "cross_relation_detection"} else None
        self.alignment_score = nn.Linear(size, 1) if "relation_alignment" in tasks else None
        self.mention_bilinear = nn.Bilinear(hidden, hidden, 1) if tasks & set(_MATCHING_TASKS) else None


class DocREForDenoisingPreTraining(DocREPreTrainedModel):
    """DSDocRE pre-training (mention-entity matching, relation detection, relational fact alignment; intra- and
    inter-document) and, with `pretraining_tasks=["relation_detection"]`, the pre-denoising ranker."""

    accepts_loss_kwargs = False  # the loss is a sum of per-task means: the Trainer scales it for accumulation

    def __init__(self, config: DocREConfig):
        super().__init__(config)
        self.encoder = self._new_encoder(config.encoder)
        self.pretraining_heads = DenoisingPreTrainingHeads(config)
        self.tokenizer = None
        self.post_init()

    # -- representations -----------------------------------------------------------------------------------------

    def relation_table(self, entities: torch.Tensor) -> torch.Tensor:
        """[B, E, H] entity embeddings -> [B, E, E, S] Bilinear_E(e_h, e_t) for every ordered pair."""
        return self.pretraining_heads.relation_bilinear.table(entities)

    def score_pairs(self, input_ids, attention_mask, mention_index, pair_index) -> torch.Tensor:
        """The ranker's relation-detection score s_n (Eq. 3) of pairs [B, P, 2] -> [B, P]; padded pairs get -inf."""
        if self.pretraining_heads.detection_score is None:
            raise ValueError("score_pairs needs a model trained with the relation_detection task (the ranker).")
        encoded = self.encode(input_ids, attention_mask, mention_index, need_attention=False)
        table = self.relation_table(self.pool_entities(encoded.sequence_output, mention_index))
        batch = torch.arange(pair_index.shape[0], device=pair_index.device)[:, None]
        relation = table[batch, pair_index[..., 0].clamp(min=0), pair_index[..., 1].clamp(min=0)]
        scores = self.pretraining_heads.detection_score(relation).squeeze(-1)
        return scores.masked_fill((pair_index < 0).any(-1), float("-inf"))

    def candidate_pairs(self, documents, per_entity: int = 2, cap: int | None = 60, batch_size: int = 8) -> list[list[list[int]]]:
        """The ranker's candidate pairs of DocRED-format documents, best first: each document's top
        `candidate_pair_count(N_entities, per_entity, cap)` ordered pairs by `score_pairs` (what the pipeline's
        `ranker=` option and, stored, `hf_docre.denoising.select_candidate_pairs` give)."""
        from .processing_docre import DocREDataCollator, DocREFeaturizer

        featurizer = DocREFeaturizer.from_model(self, label2id=None)
        collator = DocREDataCollator.from_model(self)
        device = next(self.parameters()).device
        selected = []
        for start in range(0, len(documents), batch_size):
            chunk = [{k: v for k, v in document.items() if k not in ("candidate_pairs", "labels")} for document in documents[start : start + batch_size]]
            batch = collator([featurizer(document, with_labels=False) for document in chunk])
            with torch.inference_mode():
                scores = self.score_pairs(**{k: batch[k].to(device) for k in ("input_ids", "attention_mask", "mention_index", "pair_index")})
            for row, document in enumerate(chunk):
                pairs = batch["pair_index"][row]
                real = int((pairs[:, 0] >= 0).sum())
                count = candidate_pair_count(len(document["vertexSet"]), per_entity, cap)
                order = torch.argsort(scores[row, :real].float().cpu(), descending=True, stable=True)[:count]
                selected.append(pairs[order].tolist())
        return selected

    # -- forward ---------------------------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        mention_index: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        **task_inputs,
    ) -> DocREPreTrainingOutput:
        """Encode the 2B documents once, pool their entities, and compute every configured task whose inputs are
        given (see the module doc for the inputs)."""
        if mention_index is None:
            raise ValueError("DocREForDenoisingPreTraining.forward needs `mention_index` [2B, E, M].")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        task_inputs.pop("num_items_in_batch", None)
        encoded = self.encode(input_ids, attention_mask, mention_index, need_attention=False)
        entities = self.pool_entities(encoded.sequence_output, mention_index)
        return self.task_losses(encoded.sequence_output, entities, **task_inputs)

    def task_losses(self, sequence_output: torch.Tensor, entities: torch.Tensor, **inputs) -> DocREPreTrainingOutput:
        """The tasks from the encoder output [2B, L, H] and entity embeddings [2B, E, H] (separate from `forward`
        so the losses can be checked on hand-made tensors)."""
        config, heads = self.config, self.pretraining_heads
        rows = entities.shape[0]
        row = torch.arange(rows, device=entities.device)
        partner = (row + rows // 2) % rows
        side = inputs.get("document_side")
        if side is None:  # row b and its partner are the two sides of an example
            side = (row >= rows // 2).long()
        table = self.relation_table(entities) if heads.relation_bilinear is not None else None
        results = {}

        def wanted(task, *names):
            return task in config.pretraining_tasks and all(inputs.get(name) is not None for name in names)

        if wanted("mention_matching", "masked_mention_position", "masked_mention_candidates", "masked_mention_labels"):
            position, candidates = inputs["masked_mention_position"], inputs["masked_mention_candidates"]
            mention = sequence_output[row[:, None], position.clamp(min=0)]  # [2B, K, H]
            candidate = entities[row[:, None, None], candidates.clamp(min=0)]  # [2B, K, C, H]
            logits = self._bilinear_score(heads.mention_bilinear, candidate, mention[:, :, None].expand_as(candidate))
            labels = inputs["masked_mention_labels"].masked_fill(position < 0, -100)
            results["mention_matching"] = (logits, side_mean_cross_entropy(logits, labels, side[:, None].expand_as(labels)))
        if wanted("cross_mention_matching", "cross_entity_query", "cross_entity_candidates", "cross_entity_labels"):
            query = entities[row, inputs["cross_entity_query"].clamp(min=0)]  # [2B, H]
            candidate = entities[partner[:, None], inputs["cross_entity_candidates"].clamp(min=0)]  # [2B, C, H]
            logits = self._bilinear_score(heads.mention_bilinear, candidate, query[:, None].expand_as(candidate))
            results["cross_mention_matching"] = (logits, side_mean_cross_entropy(logits, inputs["cross_entity_labels"], side))
        if wanted("relation_detection", "detection_pairs", "detection_labels"):
            pairs = inputs["detection_pairs"].clamp(min=0)  # [2B, G, C, 2]
            relation = table[row[:, None, None], pairs[..., 0], pairs[..., 1]]
            logits = heads.detection_score(relation).squeeze(-1)  # [2B, G, C]
            labels = inputs["detection_labels"]
            results["relation_detection"] = (logits, side_mean_cross_entropy(logits, labels, side[:, None].expand_as(labels)))
        if wanted("cross_relation_detection", "cross_detection_pairs", "cross_detection_labels"):
            pairs = inputs["cross_detection_pairs"].clamp(min=0)  # [B, G, C, 3]
            first = torch.arange(pairs.shape[0], device=pairs.device)[:, None, None]
            source = first + pairs[..., 0] * (rows // 2)
            logits = heads.detection_score(table[source, pairs[..., 1], pairs[..., 2]]).squeeze(-1)  # [B, G, C]
            labels = inputs["cross_detection_labels"]
            results["cross_relation_detection"] = (logits, side_mean_cross_entropy(logits, labels, torch.zeros_like(labels)))
        if wanted("relation_alignment", "alignment_query", "alignment_candidates", "alignment_labels"):
            query_pairs, candidate_pairs = inputs["alignment_query"].clamp(min=0), inputs["alignment_candidates"].clamp(min=0)
            query = table[row, query_pairs[:, 0], query_pairs[:, 1]]  # [2B, S]
            candidate = table[partner[:, None], candidate_pairs[..., 0], candidate_pairs[..., 1]]  # [2B, C, S]
            difference = query[:, None] - candidate
            distance = difference.abs() if config.alignment_distance == "abs" else difference.pow(2)
            logits = heads.alignment_score(distance).squeeze(-1)  # [2B, C]
            results["relation_alignment"] = (logits, side_mean_cross_entropy(logits, inputs["alignment_labels"], side))

        loss = entities.new_zeros((), dtype=torch.float32)
        for task, (_, task_loss) in results.items():
            loss = loss + config.pretraining_task_weights.get(task, 1.0) * task_loss
        fields = {f"{task}_loss": value for task, (_, value) in results.items()}
        fields.update({f"{task}_logits": logits for task, (logits, _) in results.items()})
        return DocREPreTrainingOutput(loss=loss, **fields)

    @staticmethod
    def _bilinear_score(layer: nn.Bilinear, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """`layer(first, second)` over any leading shape, one output -> [...]."""
        shape = first.shape[:-1]
        return layer(first.reshape(-1, first.shape[-1]), second.reshape(-1, second.shape[-1])).view(shape)


__all__ = ["PRETRAINING_TASKS", "DocREForDenoisingPreTraining", "DocREPreTrainingOutput", "side_mean_cross_entropy"]
