"""Document-level relation extraction models on top of any transformers encoder.

- `DocREPreTrainedModel`: the base class. It owns the document encoding (`encoding_docre.DocumentEncoderMixin`):
  any encoder `AutoModel` builds, as `self.encoder`, run over documents of any length.
- `DocREForRelationExtraction` (also `DocREModel`): encode -> pool entities -> pair head -> loss. The pair head is
  the one `config.head_type` names in `heads_docre.PAIR_HEADS`; the methods are presets of the config
  (`methods_docre.METHODS`).

Loaded through ``trust_remote_code``: flat siblings only (``from .x import y``), torch and transformers only.

Tensor contract (one row per document, everything padded):

- `input_ids`, `attention_mask`: [B, L]; L may exceed the encoder's window (long documents are windowed).
- `mention_index`: [B, E, M] token index of each mention's start marker, -1 = padding.
- `pair_index`: [B, P, 2] (head, tail) entity ids, -1 = padding.
- `labels`: [B, P, R] multi-hot, column 0 = NA/TH; padded pairs are -100.
- output `logits`: [B, P, R]; padded pairs get logits that never decode to a relation.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel
from transformers.utils import ModelOutput, logging

from .configuration_docre import DocREConfig
from .decoding_docre import decode_relations, relation_scores, tune_global_threshold
from .encoding_docre import DocumentEncoderMixin
from .heads_docre import PairHead, PairInputs, build_pair_head
from .layers_docre import LAST_LAYER_ATTENTION, GroupBilinear
from .losses_docre import PAD_RELATION_LOGIT, distillation_pair_loss, labelled_pair_loss, reduce_pair_loss
from .processing_docre import add_marker_tokens

logger = logging.get_logger(__name__)

PIPELINE_TASK = "doc-relation-extraction"

# Folders saved by hf_docre 0.1 kept the head's layers on the model itself ("bilinear.weight"); they now live in
# the pair head ("head.bilinear.weight").
LEGACY_KEY_MAPPING = {
    r"^(head_extractor|tail_extractor|bilinear|axial_attention|classifier|projection|existence_encoder|"
    r"existence_projection|existence_bilinear)\.": r"head.\1.",
}


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
        evidence_scores (`torch.FloatTensor` of shape `[B, P, S]`, *optional*): the share of each pair's
            localized-context weights on each sentence (DREEAM's evidence retrieval); sentences above
            `config.evidence_threshold` are the evidence of the pair's relations. With `evidence_threshold` set and
            `token_sentence` given.
        head_losses (`dict[str, torch.FloatTensor]`, *optional*): the pair head's auxiliary loss terms (each a
            weighted scalar, already in `loss`), e.g. DREEAM's `evidence_loss`.
        head_outputs (`dict[str, torch.Tensor]`, *optional*): outputs the pair head adds, each [B, P, ...].
        pair_loss_weight (`torch.FloatTensor` of shape `[B, P]`, *optional*): the `pair_loss_weight` input, returned so that a
            loss computed outside the model (`training.DocRELoss`) weighs the pairs alike.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    context_weights: torch.FloatTensor | None = None
    entity_embeddings: torch.FloatTensor | None = None
    pair_loss: torch.FloatTensor | None = None
    distillation_loss: torch.FloatTensor | None = None
    scored_pairs: torch.LongTensor | None = None
    evidence_scores: torch.FloatTensor | None = None
    head_losses: dict | None = None
    head_outputs: dict | None = None
    pair_loss_weight: torch.FloatTensor | None = None


class DocREPreTrainedModel(DocumentEncoderMixin, PreTrainedModel):
    """Base class of the DocRE models: the config class, weight initialisation, and the encoder (`self.encoder`,
    any `AutoModel`) with the long-document encoding every DocRE model shares."""

    config_class = DocREConfig
    base_model_prefix = "encoder"
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

    # The pipeline task a saved folder names for remote code (None: the model has no pipeline).
    pipeline_task: str | None = None

    def encoder_modules(self) -> list[nn.Module]:
        """Every encoder of the model (they train at the encoder's learning rate)."""
        return [self.encoder]

    # -- construction ------------------------------------------------------------------------------------------------

    @classmethod
    def from_encoder(
        cls,
        encoder_name_or_path: str | os.PathLike,
        relations: Sequence[str] | dict[str, str],
        tokenizer=None,
        relation_names: dict[str, str] | None = None,
        encoder_config: dict | None = None,
        **config_kwargs,
    ) -> DocREPreTrainedModel:
        """Build a DocRE model with pretrained encoder weights and a fresh head.

        Args:
            encoder_name_or_path: Hub id or local folder of any encoder `AutoModel` loads (with a fast tokenizer).
            relations: relation labels (without NA, which becomes index 0), or a `{code: name}` dict.
            tokenizer: a tokenizer to use instead of the encoder's own.
            relation_names: optional `{code: human name}`.
            encoder_config: options of the encoder's own config to change, e.g.
                `{"attention_probs_dropout_prob": 0.0}`; each must be an attribute the encoder's config has.
            **config_kwargs: any [`DocREConfig`] option (`loss`, `mention_pooling`, `window_stride`, ...).
        """
        if isinstance(relations, dict):
            relation_names = {**relations, **(relation_names or {})}
            relations = list(relations)
        encoder_kwargs = {}
        if encoder_config:
            base = AutoConfig.from_pretrained(encoder_name_or_path)
            unknown = [key for key in encoder_config if not hasattr(base, key)]
            if unknown:
                dropouts = sorted(k for k in base.to_dict() if "dropout" in k)
                raise ValueError(f"encoder_config: {unknown} not options of {encoder_name_or_path}'s {type(base).__name__} "
                                 f"(its dropout options: {dropouts})")
            for key, value in encoder_config.items():
                setattr(base, key, value)
            encoder_kwargs["config"] = base
        encoder = AutoModel.from_pretrained(encoder_name_or_path, **encoder_kwargs)
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
        added = add_marker_tokens(tokenizer, config)
        model = cls(config)
        for target in model.encoder_modules():
            missing, unexpected = target.load_state_dict(encoder.state_dict(), strict=False)
            missing = [k for k in missing if not k.startswith("pooler.")]
            if missing:
                raise RuntimeError(f"from_encoder: encoder weights missing after loading {encoder_name_or_path}: {missing}")
        if added and len(tokenizer) > model.config.encoder.vocab_size:
            # Marker tokens the vocabulary did not have (BERT's have `[unusedN]` entries, RoBERTa's do not).
            for target in model.encoder_modules():
                target.resize_token_embeddings(len(tokenizer))
            model.config.encoder.vocab_size = len(tokenizer)
        model.config.encoder._name_or_path = str(encoder_name_or_path)
        model.tokenizer = tokenizer
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, transfer_relation_bilinear: bool = False,
                        fresh_head: bool = False, **kwargs):
        """`PreTrainedModel.from_pretrained`, plus: folders saved by hf_docre 0.1 load (their head keys are mapped),
        and the tokenizer saved with the model is attached as `model.tokenizer`. A folder whose weights miss encoder
        or head weights, or hold NaN or infinite values, is refused with the keys named (transformers would start
        them at random and only mention it in its load report).

        Args:
            fresh_head (`bool`): accept a folder without (some of) the head's weights; they start afresh, with a
                warning naming them. Loading a folder saved by another DocRE class (a DSDocRE pre-training folder into
                the relation-extraction model) starts the head afresh without it.
            transfer_relation_bilinear (`bool`): loading a DSDocRE pre-training folder into the relation-extraction
                model, also take its Bilinear_E as the `bilinear_relation` head's (the released code starts the head
                afresh: the default). Needs `emb_size == pretraining_relation_size`.
        """
        mapping = dict(LEGACY_KEY_MAPPING)
        if transfer_relation_bilinear:
            mapping[r"^pretraining_heads\.relation_bilinear\."] = "head.relation_bilinear."
        kwargs.setdefault("key_mapping", mapping)
        if kwargs.get("config") is None:
            _check_saved_config(pretrained_model_name_or_path)
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs)
        _check_loaded_weights(cls, model, info, pretrained_model_name_or_path, fresh_head)
        loaded = (model, info) if wants_info else model
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
        self.config.custom_pipelines = {} if self.pipeline_task is None else {
            self.pipeline_task: {
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
        # The pipeline's code and what it imports (save_pretrained copies only the model's module and its imports):
        # every flat sibling.
        here = os.path.dirname(os.path.abspath(__file__))
        for name in sorted(os.listdir(here)):
            if name.endswith("_docre.py"):
                shutil.copyfile(os.path.join(here, name), os.path.join(save_directory, name))
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)



class DocREForRelationExtraction(DocREPreTrainedModel):
    """Document-level relation extraction: encode -> pool entities -> pair head -> loss.

    The published methods are config presets (`DocREConfig(method=...)`, see `methods_docre.METHODS`): ATLOP
    (default), the BERT baseline and two-step model of Wang et al. 2019, and KD-DocRE. Build one from a pretrained
    encoder with [`DocREForRelationExtraction.from_encoder`], or load a trained one with `from_pretrained`.
    `DocREModel` is the same class.
    """

    # The Trainer passes `num_items_in_batch` to forward, whose loss is then right under gradient accumulation
    # and DDP with no `compute_loss_func`.
    accepts_loss_kwargs = True
    pipeline_task = PIPELINE_TASK

    def __init__(self, config: DocREConfig):
        super().__init__(config)
        self.encoder = self._new_encoder(config.encoder)
        self.head: PairHead = build_pair_head(config, lambda: self._new_encoder(config.encoder))
        if config.use_context_pooling and not self.head.uses_context:
            logger.warning(f"DocREConfig: use_context_pooling=True has no effect with the pair head {config.head_type!r}, "
                           "which reads no localized context.")
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.tokenizer = None
        self.post_init()

    def encoder_modules(self) -> list[nn.Module]:
        return [self.encoder] + self.head.encoders()

    # -- forward -----------------------------------------------------------------------------------------------------

    def scored_pairs(self, pair_index: torch.Tensor, shared_window: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, P] real pairs, [B, P] pairs the head scores). In a long document, pairs whose entities share no
        encoder window are out of the training distribution (documents that fit one window have none); with
        `distant_pairs="no_relation"` (default) they are not scored and decode as NA."""
        pair_mask = (pair_index[..., 0] >= 0) & (pair_index[..., 1] >= 0)
        if shared_window is None or self.config.distant_pairs != "no_relation":
            return pair_mask, pair_mask
        return pair_mask, pair_mask & ~self._distant(pair_index, pair_mask, shared_window)

    @staticmethod
    def _distant(pair_index, pair_mask, shared_window):
        batch_index = torch.arange(pair_index.shape[0], device=pair_index.device)[:, None]
        shares = shared_window[batch_index, pair_index[..., 0].clamp(min=0), pair_index[..., 1].clamp(min=0)]
        return pair_mask & ~shares

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        mention_index: torch.LongTensor | None = None,
        pair_index: torch.LongTensor | None = None,
        labels: torch.Tensor | None = None,
        mention_end: torch.LongTensor | None = None,
        teacher_logits: torch.Tensor | None = None,
        token_sentence: torch.LongTensor | None = None,
        evidence_labels: torch.Tensor | None = None,
        teacher_evidence: torch.Tensor | None = None,
        pair_loss_weight: torch.Tensor | None = None,
        output_context_weights: bool = False,
        output_entity_embeddings: bool = False,
        num_items_in_batch: int | torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DocREModelOutput:
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
            token_sentence (`torch.LongTensor` of shape `[B, L]`, *optional*): the sentence of each token (-1 for
                special tokens and padding); with `config.evidence_threshold` set, the output has `evidence_scores`.
            evidence_labels (`torch.FloatTensor` of shape `[B, P, S]`, *optional*): for each pair, how many of its
                relations name each sentence as evidence (heads that learn from evidence read it: DREEAM).
            teacher_evidence (`torch.FloatTensor` of shape `[B, P, L]`, *optional*): a teacher's localized-context
                weights of each pair over the tokens (DREEAM's self-training on documents without gold evidence).
            pair_loss_weight (`torch.FloatTensor` of shape `[B, P]`, *optional*): a weight on each pair's loss (1 = as
                usual; e.g. the pairs across the parts of a joined training document). The loss stays the weighted
                sum divided by the labelled pairs, so weights of 1 give the unweighted loss exactly.
            output_context_weights (`bool`): also return the LOP weights [B, P, L].
            output_entity_embeddings (`bool`): also return the pooled entity embeddings [B, E, D].
            num_items_in_batch (*optional*): given by the Trainer: label entries over the whole optimiser step; the
                loss is then the sum over this batch's pairs divided by the step's labelled pairs (see
                `losses_docre.reduce_pair_loss`), else the mean over this batch's labelled pairs.
        Returns:
            [`DocREModelOutput`]
        """
        if mention_index is None or pair_index is None:
            raise ValueError("DocREModel.forward needs `mention_index` [B, E, M] and `pair_index` [B, P, 2].")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        encoded = self.encode(input_ids, attention_mask, mention_index, need_attention=self.head.uses_context)
        entity_embeddings = self.pool_entities(encoded.sequence_output, mention_index, mention_end)  # [B, E, D]
        pair_mask, scored = self.scored_pairs(pair_index, encoded.shared_window)
        pair_batch, pair_slot = scored.nonzero(as_tuple=True)  # the N pairs the head scores
        heads, tails = pair_index[pair_batch, pair_slot, 0], pair_index[pair_batch, pair_slot, 1]
        entities = self.dropout(entity_embeddings)
        want_evidence = (token_sentence is not None and self.head.uses_context
                         and getattr(self.config, "evidence_threshold", None) is not None)
        context, pair_weights = self._pair_context(encoded, pair_index, pair_mask, pair_batch, pair_slot, heads, tails,
                                                   output_context_weights or want_evidence or self.head.needs_context_weights)
        given = {"token_sentence": token_sentence, "evidence_labels": evidence_labels, "teacher_evidence": teacher_evidence,
                 "teacher_logits": teacher_logits,
                 "labels": labels, "mention_end": mention_end, **kwargs}
        extra = {name: given[name] for name in self.head.extra_inputs if given.get(name) is not None}

        def encode_entities(encoder):
            other = self.encode(input_ids, attention_mask, mention_index, need_attention=False, encoder=encoder)
            return self.dropout(self.pool_entities(other.sequence_output, mention_index, mention_end))

        def context_of(batch_index, head_index, tail_index):
            found, _ = self.localized_context(encoded.sequence_output, encoded.entity_attention, batch_index, head_index, tail_index)
            return self.dropout(found)

        num_entities = (mention_index >= 0).any(-1).sum(-1)
        pairs = PairInputs(entities, pair_batch, heads, tails, context, encode_entities,
                           context_of if self.head.uses_context else None, num_entities, pair_slot, pair_weights, extra)
        real_logits = self.head(pairs)  # [N, R]
        scatter = _PairScatter(pair_mask.shape, pair_batch, pair_slot)
        logits = real_logits.new_full((*pair_mask.shape, self.config.num_relations), PAD_RELATION_LOGIT)
        logits[..., 0] = 0.0  # pairs not scored decode as NA
        logits = logits.index_put(scatter.index, real_logits)
        loss, pair_loss, distillation = self._loss(real_logits, labels, teacher_logits, scatter, pair_mask, num_items_in_batch,
                                                   pair_loss_weight)
        head_losses = self.head.auxiliary_losses(pairs, real_logits, None if labels is None else scatter.gather(labels))
        if head_losses and loss is not None:
            # Each term is a mean over this batch; under gradient accumulation (num_items_in_batch: the step's labelled
            # pairs) it is weighted by this batch's share of the step, as the relation loss is.
            share = 1.0
            if num_items_in_batch is not None:
                labelled = ((labels[..., 0] != -100) & pair_mask).sum() * labels.shape[-1]  # counted as the Trainer does
                share = labelled / torch.as_tensor(num_items_in_batch, device=pair_mask.device).clamp(min=1)
            loss = loss + share * sum(head_losses.values())
        head_outputs = {name: scatter(value) for name, value in self.head.outputs(pairs, real_logits).items()}
        evidence_scores = None
        if want_evidence:
            evidence_scores = scatter(sentence_shares(pair_weights, token_sentence[pair_batch]))
        return DocREModelOutput(
            loss=loss,
            logits=logits,
            evidence_scores=evidence_scores,
            head_losses=head_losses or None,
            head_outputs=head_outputs or None,
            context_weights=scatter(pair_weights) if pair_weights is not None and output_context_weights else None,
            entity_embeddings=entity_embeddings if output_entity_embeddings else None,
            pair_loss=pair_loss,
            distillation_loss=distillation,
            scored_pairs=scored.long(),
            pair_loss_weight=pair_loss_weight,
        )

    def _pair_context(self, encoded, pair_index, pair_mask, pair_batch, pair_slot, heads, tails, need_weights):
        """Localized context [N, D] (dropout applied) of the scored pairs and, with `need_weights`, its weights
        [N, L]; (None, None) for heads that use no context."""
        if not self.head.uses_context:
            return None, None
        own_context = None
        if self.config.distant_pairs == "entity_context" and encoded.shared_window is not None:
            own_context = self._distant(pair_index, pair_mask, encoded.shared_window)[pair_batch, pair_slot]
        context, weights = self.localized_context(
            encoded.sequence_output, encoded.entity_attention, pair_batch, heads, tails, own_context, need_weights=need_weights
        )
        return self.dropout(context), weights

    def _loss(self, real_logits, labels, teacher_logits, scatter, pair_mask, num_items_in_batch, pair_loss_weight=None):
        """(loss, pair_loss [B, P], distillation [B, P]); each None when its inputs are missing. Unscored (distant)
        pairs count with a loss of 0; `pair_loss_weight` [B, P] scales each pair's loss (`pair_loss` is the weighted one)."""
        config = self.config
        teacher = None if teacher_logits is None else scatter.gather(teacher_logits)
        loss = pair_loss = distillation = None
        if labels is not None:
            per_pair, per_pair_distillation = labelled_pair_loss(config, real_logits, scatter.gather(labels), self.training, teacher,
                                                                 loss_fn=self.head.relation_loss)
            pair_loss = scatter(per_pair)
            if pair_loss_weight is not None:
                pair_loss = pair_loss * pair_loss_weight.to(pair_loss.dtype)
            loss = reduce_pair_loss(pair_loss, labels.masked_fill(~pair_mask[..., None], -100), num_items_in_batch)
        elif teacher is not None:
            per_pair_distillation = config.distillation_weight * distillation_pair_loss(real_logits, teacher, config.distillation_loss)
        if teacher is not None:
            distillation = scatter(per_pair_distillation)
        return loss, pair_loss, distillation

    # -- decoding ----------------------------------------------------------------------------------------------------

    def relation_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """[..., R] probability of each relation (see `losses_docre.relation_scores`)."""
        return relation_scores(logits, self.config.decoding)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """[..., R] logits -> [..., R] bool predictions (column 0 = NA), with the config's threshold and top-k."""
        config = self.config
        return decode_relations(
            logits,
            loss=config.decoding,
            global_threshold=config.global_threshold,
            max_relations_per_pair=config.max_relations_per_pair,
        )

    def tune_global_threshold(self, logits: torch.Tensor, labels: torch.Tensor, candidates: Sequence[float] | None = None) -> tuple[float, float]:
        """Set `config.global_threshold` (used with `loss="bce"`) to the value that maximises F1 on dev logits and
        labels ([..., R]); returns `(threshold, f1)`."""
        decoding = self.config.decoding
        if decoding == "threshold_class":
            raise ValueError("tune_global_threshold is for BCE and two-step heads; ATL/AFL heads learn their threshold.")
        threshold, f1 = tune_global_threshold(logits, labels, candidates, self.config.max_relations_per_pair, decoding)
        self.config.global_threshold = threshold
        return threshold, f1

class _PairScatter:
    """Between the N scored pairs ([N, ...]) and the padded pair table ([B, P, ...])."""

    def __init__(self, shape, pair_batch, pair_slot):
        self.shape, self.index = tuple(shape), (pair_batch, pair_slot)

    def __call__(self, values, fill=0.0):
        """[N, ...] -> [B, P, ...] with `fill` where a pair was not scored."""
        return values.new_full((*self.shape, *values.shape[1:]), fill).index_put(self.index, values)

    def gather(self, table):
        """[B, P, ...] -> [N, ...]."""
        return table[self.index]


_REQUIRED_CONFIG_KEYS = ("encoder", "id2label", "emb_size", "block_size")


def _check_saved_config(name_or_path):
    """A local folder's config.json exists and has what every DocRE model is built from; else say which key is
    missing (transformers would load a config with defaults and fail later on a size mismatch)."""
    path = os.fspath(name_or_path)
    if not os.path.isdir(path):
        return
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        raise OSError(f"{path}: no config.json; a saved DocRE model folder has config.json and model.safetensors")
    import json

    try:
        with open(config_file, encoding="utf-8") as handle:
            saved = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OSError(f"{config_file} is not valid JSON ({error})") from None
    if not isinstance(saved, dict):
        raise OSError(f"{config_file} must hold a JSON object, got {type(saved).__name__}")
    missing = [key for key in _REQUIRED_CONFIG_KEYS if saved.get(key) in (None, {}, "")]
    if missing:
        raise OSError(f"{config_file} lacks {', '.join(repr(k) for k in missing)}: it was not written by a DocRE model's "
                      "save_pretrained, or was edited; restore it from the saved folder")


def _check_loaded_weights(cls, model, info, name_or_path, fresh_head):
    """Refuse missing weights (the encoder's always; the head's unless `fresh_head` or the folder was saved by another
    DocRE class) and non-finite values, naming the keys."""
    missing = [key for key in info.get("missing_keys") or () if ".pooler." not in key]
    saved_by = set(getattr(model.config, "architectures", None) or ())
    names = {cls.__name__} | ({"DocREModel"} if cls.__name__ == "DocREForRelationExtraction" else set())
    other_class = bool(saved_by) and not saved_by & names
    # The model's encoder, and encoders a head owns (two-step's `head.existence_encoder`).
    encoder_missing = [key for key in missing if any(part == "encoder" or part.endswith("_encoder") for part in key.split(".")[:2])]
    head_missing = [key for key in missing if key not in encoder_missing]

    def listed(keys):
        return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")

    if encoder_missing:
        raise ValueError(f"{name_or_path}: the weights lack {len(encoder_missing)} encoder tensors ({listed(encoder_missing)}); "
                         "the folder's model.safetensors is incomplete or belongs to another model")
    if head_missing:
        if not (fresh_head or other_class):
            raise ValueError(f"{name_or_path}: the weights lack {len(head_missing)} head tensors ({listed(head_missing)}): "
                             "the model would predict at random. Pass fresh_head=True to start them afresh (then train).")
        logger.warning(f"{name_or_path}: the head starts afresh ({listed(head_missing)} not in the folder); train it before use.")
    bad = [name for name, tensor in model.state_dict().items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise ValueError(f"{name_or_path}: NaN or infinite values in {listed(bad)}; the weights are corrupt "
                         "(a diverged training run?)")


def sentence_shares(weights: torch.Tensor, token_sentence: torch.Tensor, num_sentences: int | None = None) -> torch.Tensor:
    """weights [N, L] over tokens, token_sentence [N, L] (sentence id, -1 = none) -> [N, S]: the weight on each
    sentence's tokens (S = `num_sentences`, default the largest sentence id + 1)."""
    if num_sentences is None:
        num_sentences = max(1, int(token_sentence.max()) + 1) if token_sentence.numel() else 1
    index = token_sentence.masked_fill(token_sentence < 0, num_sentences)
    shares = weights.new_zeros(weights.shape[0], num_sentences + 1).scatter_add(1, index, weights)
    return shares[:, :num_sentences]


# The name of the relation-extraction model in hf_docre 0.1; folders saved then name it in `auto_map`.
DocREModel = DocREForRelationExtraction


def load_tokenizer(name_or_path: str | os.PathLike, **kwargs):
    """A fast tokenizer that accepts pre-split words (byte-level BPE tokenizers need `add_prefix_space=True`)."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    if getattr(tokenizer, "add_prefix_space", None) is False:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, add_prefix_space=True, **kwargs)
    return tokenizer


def special_token_layout(tokenizer) -> tuple[int, int]:
    """How many special tokens the tokenizer puts before and after a single sequence's content."""
    content = tokenizer("relation", add_special_tokens=False)["input_ids"]
    full = tokenizer("relation")["input_ids"]
    for prefix in range(len(full) - len(content) + 1):
        if full[prefix : prefix + len(content)] == content:
            return prefix, len(full) - len(content) - prefix
    return 1, 1
