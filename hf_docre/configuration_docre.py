"""Configuration for document-level relation extraction (DocRE) models.

This file is loaded through ``trust_remote_code``: it imports nothing but transformers and its flat sibling
``methods_docre.py``.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Literal

from transformers import AutoConfig, PretrainedConfig

from .methods_docre import METHODS, method_preset

NA_LABEL = "NA"

# Options that take one of a few values are typed with these; `DocREConfig._validate` checks every such option
# against its type, so the allowed values are written once.
MentionPooling = Literal["logsumexp", "max", "mean"]
RelationLoss = Literal["atl", "bce", "afl", "bce_na"]
MentionRepresentation = Literal["start", "span"]
DistillationLoss = Literal["mse", "kl"]
DistantPairs = Literal["no_relation", "entity_context", "zero_context"]
FocalPositiveWeight = Literal["paper", "released_code"]
AlignmentDistance = Literal["abs", "square"]
MarkerOrder = Literal["entity", "ranked"]
LongInput = Literal["windows", "two_windows"]
AxialNetwork = Literal["paper", "released"]
WordTokenization = Literal["in_context", "isolated"]

# DSDocRE pre-training tasks (Xiao et al. 2020, Sec. 3.2).
PRETRAINING_TASKS = (
    "mention_matching", "cross_mention_matching", "relation_detection", "cross_relation_detection", "relation_alignment",
)


class _Unset:
    def __repr__(self):
        return "<unset>"


_UNSET = _Unset()
_DEFAULTS = dict(
    mention_pooling="logsumexp", use_context_pooling=True, emb_size=768, loss="atl", max_relations_per_pair=4,
    entity_marker="*", mention_representation="start", pair_head="group_bilinear", two_step=False,
    axial_attention=False, focal_gamma=0.5, evidence_threshold=None,
)

# Published methods as option presets (`DocREConfig(method=...)`): see `methods_docre.METHODS`. Kept as a name for
# code written against hf_docre 0.1.
METHOD_PRESETS = {name: method.preset for name, method in METHODS.items()}


def _pipeline_installed(custom_pipelines):
    """Whether every task in a saved `custom_pipelines` is served by the installed hf_docre's registered pipeline."""
    try:
        from transformers.pipelines import PIPELINE_REGISTRY
    except ImportError:  # pragma: no cover
        return False
    for task in custom_pipelines:
        registered = PIPELINE_REGISTRY.supported_tasks.get(task)
        if registered is None or not registered["impl"].__module__.startswith("hf_docre."):
            return False
    return True


class DocREConfig(PretrainedConfig):
    r"""Configuration of a DocRE model: a nested encoder config plus the relation-classification head.

    Args:
        encoder (`PretrainedConfig` or `dict`): configuration of any encoder `AutoModel` can build
            (BERT, RoBERTa, ...). A dict needs a `model_type`.
        relations (`list[str]`, *optional*): relation names. Index 0 of `id2label` is always the NA/threshold
            class (`"NA"`), so `id2label = {0: "NA", 1: relations[0], ...}`. Ignored when `id2label` is given.
        relation_names (`dict[str, str]`, *optional*): human-readable names of relation codes
            (e.g. `{"P17": "country"}`), used when printing predictions.
        mention_pooling (`str`): how an entity's mention embeddings are pooled: `"logsumexp"` (ATLOP),
            `"max"` or `"mean"`.
        use_context_pooling (`bool`): localized context pooling (LOP) from the encoder's last attention layer.
        emb_size (`int`): size of the head/tail representations before the group bilinear.
        block_size (`int`): group size of the group bilinear; `emb_size` must be a multiple of it.
        loss (`str`): `"atl"` (adaptive-thresholding loss with a learned TH class at index 0), `"afl"` (KD-DocRE's
            adaptive focal loss, the same decoding), `"bce"` (binary cross-entropy over relations, decoded with
            `global_threshold`) or `"bce_na"` (DSDocRE: BCE over every relation and NA, argmax decoding).
        global_threshold (`float`): probability threshold used with `loss="bce"`; tune it on dev data.
        max_relations_per_pair (`int`): at most this many relations are decoded per pair (ATLOP keeps 4);
            0 or a negative value keeps every relation above the threshold.
        entity_marker (`str` or `None`): text inserted before and after each mention (ATLOP: `"*"`).
            `None` inserts no markers and a mention is represented by its first sub-token.
        window_size (`int`, *optional*): the encoder's maximum input length in tokens, special tokens included.
            Longer documents are encoded as overlapping windows. `None` means "the encoder's limit".
        window_stride (`int`, *optional*): how far consecutive windows advance, in content tokens. Defaults to
            half a window. Smaller strides give every token more context at more cost.
        window_prefix_tokens / window_suffix_tokens (`int`): how many special tokens the tokenizer puts before
            and after the content (BERT `[CLS] ... [SEP]` and RoBERTa `<s> ... </s>`: 1 and 1). Every window
            repeats them.
        classifier_dropout (`float`): dropout on the pooled entity/context embeddings (0 disables it).
        method (`str`): a registered method by name (`methods_docre.METHODS`), which sets the options below:
            `"atlop"` (default), `"bert-baseline"`, `"two-step"`, `"kd-docre"`, `"dreeam"`, `"dsdocre"`, or one added
            with `register_method`. Options passed explicitly win.
        mention_representation (`str`): `"start"` = the hidden state at `mention_index` (the start marker, or the
            first sub-token without markers); `"span"` = every token of the mention (`mention_index` to
            `mention_end`), pooled with `mention_pooling="mean"` over all tokens of all the entity's mentions.
        pair_head (`str`): a registered pair head (`heads_docre.PAIR_HEADS`): `"group_bilinear"` (ATLOP: head/tail
            extractors with context, group bilinear), `"bilinear"` (Wang et al.: a linear projection to `emb_size`,
            then a full bilinear layer), or one added with `register_pair_head`. `two_step` and `axial_attention`
            wrap the bilinear and group-bilinear heads (see `head_type`).
        two_step (`bool`): Wang et al.'s two-step model: a second encoder and head decide relation / no relation
            (column 0 of the logits is its "no relation" logit); the main head gives the relation types.
        two_step_shared_encoder (`bool`): both steps share one encoder (the paper trains two models: `False`).
        negative_sampling_ratio (`float`): two-step, step 1: NA pairs kept per related pair in a training batch (3).
        axial_attention (`bool`): KD-DocRE's axial attention over the n x n entity-pair table, then a linear
            classifier (Eq. 7-8). The group bilinear then outputs `pair_hidden_size` features.
        pair_hidden_size (`int`, *optional*): size of the pair representation g with axial attention (paper: the
            encoder's hidden size, the default).
        focal_gamma (`float`): gamma of the adaptive focal loss (`loss="afl"`; paper 0.5).
        focal_positive_weight (`str`): `"paper"` weights positives by (1 - P)^gamma (Eq. 11); `"released_code"`
            by 1 + (1 - P)^gamma, as the authors' code does.
        distillation_loss (`str`): `"mse"` (paper) or `"kl"`, between student and teacher logits when
            `teacher_logits` are given.
        distillation_weight (`float`): weight of the distillation loss (paper: L = L_KD + L_RE, 1.0).
        marker_format (`str`), max_marked_entities (`int`): with `entity_marker="indexed"` (DSDocRE), entity i is
            marked by `marker_format.format(2i+1)` / `marker_format.format(2i+2)`; documents with more than
            `max_marked_entities` entities are refused. `from_encoder` adds the markers to the tokenizer.
        marker_order (`str`): with indexed markers, `"entity"` numbers marker pairs by entity index (the paper, and
            the released code's pre-training); `"ranked"` is the released code's fine-tuning scheme: entities are
            numbered by first appearance in the document's `candidate_pairs` (the ranker's list, best first), pair
            j = (`marker_format.format(2j)`, `marker_format.format(2j+1)`) from `[unused0]` (the pre-training
            `[BLANK]`), and entities in no candidate pair get no markers. It needs `candidate_pairs`.
        blank_token, mention_mask_token (`str`): DSDocRE pre-training: the `[BLANK]` that replaces a blanked entity's
            mention words, and the token that replaces a masked mention (mention-entity matching).
        max_pooled_mentions (`int`, *optional*): pool at most the first N mentions of an entity (DSDocRE's
            released code: 3); None pools all (the paper).
        pretraining_tasks (`list[str]`): DSDocRE pre-training tasks to train (default all of `PRETRAINING_TASKS`);
            the ranker is `["relation_detection"]`.
        pretraining_task_weights (`dict`): weight of each task's loss (Eq. 5: all 1).
        alignment_distance (`str`): relational fact alignment score w·|r_A - r_B| + b (`"abs"`, paper Eq. 4) or
            w·(r_A - r_B)^2 + b (`"square"`, the released code).
        pretraining_relation_size (`int`): size of the pre-training relation representation Bilinear_E (256).
        axial_network (`str`): with `axial_attention`, `"paper"` (default: Eq. 7, one single-head layer over the real
            pairs) or `"released"`: the released KD-DocRE code's network (`axial_layers` layers of `axial_heads`-head
            axial attention with a feed-forward layer and LayerNorm, an outer residual, no mask, over a table padded to
            `axial_table_size` entities and filled on the diagonal and the padding; a projection without bias).
        axial_layers, axial_heads, axial_table_size (`int`): the released network's 6 layers, 8 heads, 42 entities.
        long_input (`str`): how a document longer than the window is encoded. `"windows"` (default): windows of the
            encoder's size every `window_stride` tokens, each attention row renormalised over the tokens its window
            keeps, then averaged over windows. `"two_windows"`: the rule of the released ATLOP, DREEAM and KD-DocRE
            code for up to twice the window: the first window (the document's start, closed by
            `window_end_token_ids`) and the last (the document's prefix tokens, then its end); hidden states averaged
            where both cover a token, attention rows summed over the windows and then renormalised. Beyond what two
            windows cover, hf_docre adds windows in between (the released code truncates documents at 1024 tokens).
        window_end_token_ids (`list[int]`, *optional*): with `long_input="two_windows"`, the tokens that close the
            first window (the released code: `[SEP]` for BERT, `</s></s>` for RoBERTa). None: the document's own
            suffix tokens.
        context_layers (`int`): hidden states and the attention of localized context pooling are averaged over the
            encoder's last `context_layers` layers (1: the last layer only, ATLOP; the released DREEAM code: 3).
        context_epsilon (`float`): added to the normaliser of the pair's attention (averaged over heads) in
            localized context pooling: a = q / (sum(q) + eps). 0 (default, the paper's a = q / sum(q)); the released
            code adds 1e-5 (ATLOP), 1e-30 (DREEAM) or 1e-10 / heads (KD-DocRE). Pairs with q = 0 get no context.
        word_tokenization (`str`): `"in_context"` (default): words are tokenized as in one tokenizer call on the
            document's words (byte-level BPE tokenizers then see a space before every word); `"isolated"`: every word
            alone with no space before it, as the released ATLOP/DREEAM/KD-DocRE code calls `tokenizer.tokenize(word)`
            (differs from the default only for byte-level BPE tokenizers such as RoBERTa's).
        evidence_threshold (`float`, *optional*): evidence retrieval from localized context pooling (DREEAM, Ma et
            al. 2023): a sentence is evidence of a pair's relations when the share of the pair's context weights on
            its tokens exceeds this (DREEAM: 0.2). None: no evidence. Needs `use_context_pooling`.
        **kwargs: `PretrainedConfig`'s options, and the pair head's own (`PairHead.options`, e.g. DREEAM's
            `evidence_weight`), which the method's preset may also set.
        distant_pairs (`str`): what to do in a long document with a pair whose entities share no encoder window
            (no window holds a mention of each; documents that fit one window have no such pair, so the head never
            saw one in training): `"no_relation"` (default) does not score them: they decode as NA and take no
            loss; `"entity_context"` scores them with a localized context made of the two entities' own attention
            (the mean of A_s and A_o instead of their product); `"zero_context"` scores them with no context at
            all (what hf_docre did before; the head fires on such pairs far too often). See
            `benchmarks/bench_long_documents.py`.
    """

    model_type = "docre"
    sub_configs = {"encoder": AutoConfig}
    # What the Trainer's evaluation loop keeps of the model output: the logits, and DREEAM's evidence scores.
    keys_to_ignore_at_inference = ["context_weights", "entity_embeddings", "pair_loss", "distillation_loss",
                                   "scored_pairs", "head_losses", "head_outputs"]
    has_no_defaults_at_init = True

    def __init__(
        self,
        encoder: PretrainedConfig | dict | None = None,
        relations: Sequence[str] | None = None,
        relation_names: dict[str, str] | None = None,
        mention_pooling: MentionPooling = _UNSET,
        use_context_pooling: bool = _UNSET,
        emb_size: int = _UNSET,
        block_size: int = 64,
        loss: RelationLoss = _UNSET,
        global_threshold: float = 0.5,
        max_relations_per_pair: int = _UNSET,
        entity_marker: str | None = _UNSET,
        window_size: int | None = None,
        window_stride: int | None = None,
        window_prefix_tokens: int = 1,
        window_suffix_tokens: int = 1,
        classifier_dropout: float = 0.0,
        method: str = "atlop",
        mention_representation: MentionRepresentation = _UNSET,
        pair_head: str = _UNSET,
        two_step: bool = _UNSET,
        two_step_shared_encoder: bool = False,
        negative_sampling_ratio: float = 3.0,
        axial_attention: bool = _UNSET,
        pair_hidden_size: int | None = None,
        focal_gamma: float = _UNSET,
        focal_positive_weight: FocalPositiveWeight = "paper",
        distillation_loss: DistillationLoss = "mse",
        distillation_weight: float = 1.0,
        distant_pairs: DistantPairs = "no_relation",
        marker_format: str = "[unused{}]",
        max_marked_entities: int = 42,
        marker_order: MarkerOrder = "entity",
        blank_token: str = "[unused0]",
        mention_mask_token: str = "[unused200]",
        max_pooled_mentions: int | None = None,
        pretraining_tasks: Sequence[str] | None = None,
        pretraining_task_weights: dict[str, float] | None = None,
        alignment_distance: AlignmentDistance = "abs",
        pretraining_relation_size: int = 256,
        axial_network: AxialNetwork = "paper",
        axial_layers: int = 6,
        axial_heads: int = 8,
        axial_table_size: int = 42,
        long_input: LongInput = "windows",
        window_end_token_ids: Sequence[int] | None = None,
        context_layers: int = 1,
        context_epsilon: float = 0.0,
        word_tokenization: WordTokenization = "in_context",
        evidence_threshold: float | None = _UNSET,
        **kwargs,
    ):
        if kwargs.get("custom_pipelines") and _pipeline_installed(kwargs["custom_pipelines"]):
            # Saved folders name their pipeline for remote code; where hf_docre is installed its own registered
            # pipeline serves the task, and keeping the entry would make pipeline() demand trust_remote_code.
            kwargs.pop("custom_pipelines")
        # Options left unset take the method's preset value, else the ATLOP default. (A saved config passes every
        # option explicitly, so loading never changes one.)
        preset = method_preset(method)

        def resolve(name, value):
            return preset.get(name, _DEFAULTS[name]) if value is _UNSET else value

        mention_pooling = resolve("mention_pooling", mention_pooling)
        use_context_pooling = resolve("use_context_pooling", use_context_pooling)
        emb_size = resolve("emb_size", emb_size)
        loss = resolve("loss", loss)
        max_relations_per_pair = resolve("max_relations_per_pair", max_relations_per_pair)
        entity_marker = resolve("entity_marker", entity_marker)
        mention_representation = resolve("mention_representation", mention_representation)
        pair_head = resolve("pair_head", pair_head)
        two_step = resolve("two_step", two_step)
        axial_attention = resolve("axial_attention", axial_attention)
        focal_gamma = resolve("focal_gamma", focal_gamma)
        evidence_threshold = resolve("evidence_threshold", evidence_threshold)
        code = DocREConfig.__init__.__code__
        named = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        for name, value in preset.items():  # the preset's values for options the pair head owns
            if name not in named:
                kwargs.setdefault(name, value)
        if encoder is None:
            encoder = {"model_type": "bert"}
        if isinstance(encoder, dict):
            encoder = dict(encoder)
            model_type = encoder.pop("model_type", None)
            if model_type is None:
                raise ValueError("DocREConfig: `encoder` as a dict needs a `model_type`, e.g. {'model_type': 'bert'}.")
            encoder = AutoConfig.for_model(model_type, **encoder)
        self.encoder = encoder

        if relations is not None and kwargs.get("id2label") is None:
            relations = list(relations)
            if NA_LABEL in relations:
                relations.remove(NA_LABEL)
            if len(set(relations)) != len(relations):
                raise ValueError("DocREConfig: `relations` contains duplicates.")
            labels = [NA_LABEL] + relations
            kwargs["id2label"] = dict(enumerate(labels))
            kwargs["label2id"] = {label: i for i, label in enumerate(labels)}
        self.relation_names = dict(relation_names or {})

        self.mention_pooling = mention_pooling
        self.use_context_pooling = use_context_pooling
        self.emb_size = emb_size
        self.block_size = block_size
        self.loss = loss
        self.global_threshold = global_threshold
        self.max_relations_per_pair = max_relations_per_pair
        self.entity_marker = entity_marker
        self.window_size = window_size
        self.window_stride = window_stride
        self.window_prefix_tokens = window_prefix_tokens
        self.window_suffix_tokens = window_suffix_tokens
        self.classifier_dropout = classifier_dropout
        self.method = method
        self.mention_representation = mention_representation
        self.pair_head = pair_head
        self.two_step = two_step
        self.two_step_shared_encoder = two_step_shared_encoder
        self.negative_sampling_ratio = negative_sampling_ratio
        self.axial_attention = axial_attention
        self.pair_hidden_size = pair_hidden_size
        self.focal_gamma = focal_gamma
        self.focal_positive_weight = focal_positive_weight
        self.distillation_loss = distillation_loss
        self.distillation_weight = distillation_weight
        self.distant_pairs = distant_pairs
        tasks = list(PRETRAINING_TASKS if pretraining_tasks is None else pretraining_tasks)
        self.marker_format = marker_format
        self.max_marked_entities = max_marked_entities
        self.marker_order = marker_order
        self.blank_token = blank_token
        self.mention_mask_token = mention_mask_token
        self.max_pooled_mentions = max_pooled_mentions
        self.pretraining_tasks = tasks
        self.pretraining_task_weights = {task: float((pretraining_task_weights or {}).get(task, 1.0)) for task in tasks}
        self.alignment_distance = alignment_distance
        self.pretraining_relation_size = pretraining_relation_size
        self.axial_network = axial_network
        self.axial_layers = axial_layers
        self.axial_heads = axial_heads
        self.axial_table_size = axial_table_size
        self.long_input = long_input
        self.window_end_token_ids = None if window_end_token_ids is None else [int(i) for i in window_end_token_ids]
        self.context_layers = context_layers
        self.context_epsilon = context_epsilon
        self.word_tokenization = word_tokenization
        self.evidence_threshold = evidence_threshold
        self._validate()
        super().__init__(**kwargs)
        if self.id2label is None or 0 not in self.id2label:
            self.id2label = {0: NA_LABEL, 1: "relation"}
            self.label2id = {NA_LABEL: 0, "relation": 1}
        if self.label2id is None:
            self.label2id = {label: int(i) for i, label in self.id2label.items()}

    _INT_OPTIONS = ("emb_size", "block_size", "max_relations_per_pair", "window_prefix_tokens", "window_suffix_tokens",
                    "max_marked_entities", "pretraining_relation_size", "axial_layers", "axial_heads", "axial_table_size")
    _OPTIONAL_INT_OPTIONS = ("window_size", "window_stride", "pair_hidden_size", "max_pooled_mentions")
    _FLOAT_OPTIONS = ("global_threshold", "classifier_dropout", "negative_sampling_ratio", "focal_gamma", "distillation_weight")
    _BOOL_OPTIONS = ("use_context_pooling", "two_step", "two_step_shared_encoder", "axial_attention")
    _POSITIVE_OPTIONS = ("emb_size", "block_size", "axial_layers", "axial_heads", "window_size", "window_stride",
                         "pair_hidden_size", "max_pooled_mentions", "pretraining_relation_size")

    @classmethod
    def literal_options(cls) -> dict[str, tuple]:
        """{option: its allowed values} for every option typed `Literal[...]` in `__init__`."""
        hints = typing.get_type_hints(cls.__init__, globalns={**globals(), "PretrainedConfig": PretrainedConfig})
        return {name: typing.get_args(hint) for name, hint in hints.items() if typing.get_origin(hint) is Literal}

    def _validate_types(self):
        def is_int(value):
            return isinstance(value, int) and not isinstance(value, bool)

        for name in self._INT_OPTIONS + self._OPTIONAL_INT_OPTIONS:
            value = getattr(self, name)
            if value is None and name in self._OPTIONAL_INT_OPTIONS:
                continue
            if not is_int(value):
                raise ValueError(f"DocREConfig: `{name}` must be an int, got {value!r} ({type(value).__name__}).")
            if name in self._POSITIVE_OPTIONS and value < 1:
                raise ValueError(f"DocREConfig: `{name}` must be at least 1, got {value!r}.")
        for name in self._FLOAT_OPTIONS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ValueError(f"DocREConfig: `{name}` must be a number, got {value!r} ({type(value).__name__}).")
        for name in self._BOOL_OPTIONS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"DocREConfig: `{name}` must be true or false, got {getattr(self, name)!r}.")

    def _validate(self):
        """Raise a ValueError naming the option for a value or a combination the models cannot use."""
        self._validate_types()
        for name, allowed in self.literal_options().items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"DocREConfig: `{name}` must be one of {allowed}, got {getattr(self, name)!r}.")
        if self.pair_head == "group_bilinear" and self.emb_size % self.block_size != 0:
            raise ValueError(f"DocREConfig: `emb_size` ({self.emb_size}) must be a multiple of `block_size` ({self.block_size}).")
        if self.mention_representation == "span" and self.mention_pooling != "mean":
            raise ValueError("DocREConfig: `mention_representation='span'` averages the mentions' tokens; it needs `mention_pooling='mean'`.")
        if self.two_step and self.loss != "bce":
            raise ValueError("DocREConfig: `two_step=True` trains both steps with binary cross-entropy; use `loss='bce'`.")
        if not isinstance(self.pair_head, str) or not self.pair_head:
            raise ValueError(f"DocREConfig: `pair_head` must be the name of a registered pair head, got {self.pair_head!r}.")
        if self.axial_attention and self.pair_head != "group_bilinear":
            raise ValueError("DocREConfig: `axial_attention` works on the group-bilinear pair representation.")
        if self.marker_order == "ranked" and self.entity_marker != "indexed":
            raise ValueError("DocREConfig: `marker_order='ranked'` numbers indexed markers; it needs `entity_marker='indexed'`.")
        if not (isinstance(self.context_layers, int) and not isinstance(self.context_layers, bool) and self.context_layers >= 1):
            raise ValueError(f"DocREConfig: `context_layers` must be an int >= 1, got {self.context_layers!r}.")
        if (isinstance(self.context_epsilon, bool) or not isinstance(self.context_epsilon, (int, float))
                or not 0 <= self.context_epsilon < float("inf")):
            raise ValueError(f"DocREConfig: `context_epsilon` must be a number >= 0, got {self.context_epsilon!r}.")
        if self.evidence_threshold is not None:
            if (isinstance(self.evidence_threshold, bool) or not isinstance(self.evidence_threshold, (int, float))
                    or not 0 <= self.evidence_threshold < 1):
                raise ValueError(f"DocREConfig: `evidence_threshold` must be None or a number in [0, 1), got {self.evidence_threshold!r}.")
            if not self.use_context_pooling:
                raise ValueError("DocREConfig: `evidence_threshold` reads the localized-context weights; it needs `use_context_pooling=True`.")
        unknown = [task for task in self.pretraining_tasks if task not in PRETRAINING_TASKS]
        if unknown:
            raise ValueError(f"DocREConfig: unknown `pretraining_tasks` {unknown}; tasks: {PRETRAINING_TASKS}.")

    @property
    def head_type(self):
        """The registered pair head (`heads_docre.PAIR_HEADS`) this config builds: `"two_step"` with `two_step`,
        `"axial"` with `axial_attention`, else `pair_head`."""
        if self.two_step:
            return "two_step"
        if self.axial_attention:
            return "axial_released" if getattr(self, "axial_network", "paper") == "released" else "axial"
        return self.pair_head

    @property
    def decoding(self):
        """How logits become predictions, as the pair head decides (`PairHead.decoding`): `"threshold_class"`
        (ATL/AFL: a relation beats column 0), `"global_threshold"` (BCE: sigmoid above `global_threshold`) or
        `"two_step"` (column 0 is step 1's no-relation logit; accepted pairs get step 2's relations above
        `global_threshold`, at least the best one)."""
        from .heads_docre import PAIR_HEADS, PairHead

        return PAIR_HEADS.get(self.head_type, PairHead).decoding(self)

    @property
    def num_relations(self):
        """Number of output columns, the NA/TH class (column 0) included."""
        return len(self.id2label)

    @property
    def effective_window_size(self):
        if self.window_size is not None:
            return int(self.window_size)
        limit = getattr(self.encoder, "max_position_embeddings", None)
        if limit is None:
            return None
        # RoBERTa-style position ids start after the padding index and lose `pad_token_id + 1` slots.
        if getattr(self.encoder, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
            limit -= (self.encoder.pad_token_id or 0) + 1
        return int(limit)

    @property
    def effective_window_stride(self):
        if self.window_stride is not None:
            return int(self.window_stride)
        window = self.effective_window_size
        content = window - self.window_prefix_tokens - self.window_suffix_tokens
        return max(1, content // 2)

    def to_dict(self):
        output = super().to_dict()
        if isinstance(output.get("encoder"), PretrainedConfig):
            output["encoder"] = output["encoder"].to_dict()
        return output
