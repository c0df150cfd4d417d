"""Configuration for document-level relation extraction (DocRE) models.

This file is loaded through ``trust_remote_code``: it imports nothing but transformers and must stay a flat
sibling of ``modeling_docre.py``.
"""

from transformers import AutoConfig, PretrainedConfig

NA_LABEL = "NA"

_POOLINGS = ("logsumexp", "max", "mean")
_LOSSES = ("atl", "bce")


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
        loss (`str`): `"atl"` (adaptive-thresholding loss with a learned TH class at index 0) or `"bce"`
            (binary cross-entropy over relations, decoded with `global_threshold`).
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
    """

    model_type = "docre"
    sub_configs = {"encoder": AutoConfig}
    has_no_defaults_at_init = True

    def __init__(
        self,
        encoder=None,
        relations=None,
        relation_names=None,
        mention_pooling="logsumexp",
        use_context_pooling=True,
        emb_size=768,
        block_size=64,
        loss="atl",
        global_threshold=0.5,
        max_relations_per_pair=4,
        entity_marker="*",
        window_size=None,
        window_stride=None,
        window_prefix_tokens=1,
        window_suffix_tokens=1,
        classifier_dropout=0.0,
        **kwargs,
    ):
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

        if mention_pooling not in _POOLINGS:
            raise ValueError(f"DocREConfig: `mention_pooling` must be one of {_POOLINGS}, got {mention_pooling!r}.")
        if loss not in _LOSSES:
            raise ValueError(f"DocREConfig: `loss` must be one of {_LOSSES}, got {loss!r}.")
        if emb_size % block_size != 0:
            raise ValueError(f"DocREConfig: `emb_size` ({emb_size}) must be a multiple of `block_size` ({block_size}).")
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
        super().__init__(**kwargs)
        if self.id2label is None or 0 not in self.id2label:
            self.id2label = {0: NA_LABEL, 1: "relation"}
            self.label2id = {NA_LABEL: 0, "relation": 1}
        if self.label2id is None:
            self.label2id = {label: int(i) for i, label in self.id2label.items()}

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
