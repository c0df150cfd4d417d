"""DocRED-format documents -> model features, and the collator that pads them into the model's batch contract.

Loaded through ``trust_remote_code`` by the pipeline: flat sibling, torch/numpy/transformers only.

A DocRED-format document is a dict with `title`, `sents` (list of sentences, each a list of words), `vertexSet`
(list of entities, each a list of mentions `{"name", "pos": [start, end), "sent_id", "type"}`) and optionally
`labels` (list of `{"h", "t", "r", "evidence"}`).

Features of one document (compact, so `datasets` stores them cheaply):
- `title`: the document's title (metadata; the collator ignores it);
- `input_ids`: list[int], the whole document with markers and special tokens (never truncated);
- `mention_index`: list (per entity) of lists of token indices of each mention's start marker;
- `pair_index`: list of [head, tail] entity ids, all ordered pairs h != t, row-major;
- `labels` (when the document has labels): list of [pair position, relation id]; the collator expands them to
  the multi-hot [P, R] rows the model takes (column 0 = NA where a pair has no relation).
"""

import warnings

import numpy as np
import torch


class DocREInputError(ValueError):
    """A document that cannot be turned into features. Names the document (`title`, `index`) and the `field`."""

    def __init__(self, message, title=None, index=None, field=None):
        where = f"document {title!r}" if title is not None else "document"
        if index is not None:
            where += f" (index {index})"
        if field is not None:
            where += f", field {field}"
        super().__init__(f"{where}: {message}")
        self.title = title
        self.index = index
        self.field = field
        self.processed = None  # features of the documents processed before this one, when featurizing a list


def validate_document(document, index=None, relations=None):
    """Check a DocRED-format document; raise [`DocREInputError`] naming the document, its index and the field.

    Checks: sentences present and lists of words; every entity has mentions; each mention's `sent_id` is a
    sentence of the document and its `pos` a non-empty span inside that sentence; each label's `h`/`t` are
    distinct entities of the document; each label's relation is in `relations` (when given).
    """
    title = document.get("title")

    def fail(message, field):
        raise DocREInputError(message, title=title, index=index, field=field)

    sents = document.get("sents")
    if not sents:
        fail("has no sentences", "sents")
    for s, sentence in enumerate(sents):
        if not isinstance(sentence, (list, tuple)):
            fail(f"must be a list of words, got {type(sentence).__name__}", f"sents[{s}]")
    entities = document.get("vertexSet")
    if entities is None:
        fail("is missing", "vertexSet")
    for e, mentions in enumerate(entities):
        if not mentions:
            fail("entity has no mentions", f"vertexSet[{e}]")
        for m, mention in enumerate(mentions):
            sent_id = mention.get("sent_id")
            if not isinstance(sent_id, int) or not 0 <= sent_id < len(sents):
                fail(f"sent_id {sent_id!r} is not a sentence of the document ({len(sents)} sentences)",
                     f"vertexSet[{e}][{m}].sent_id")
            pos = mention.get("pos")
            sentence_length = len(sents[sent_id])
            if not isinstance(pos, (list, tuple)) or len(pos) != 2 or not 0 <= pos[0] < pos[1] <= sentence_length:
                fail(f"mention span {pos!r} is outside sentence {sent_id} ({sentence_length} words)",
                     f"vertexSet[{e}][{m}].pos")
    for k, label in enumerate(document.get("labels") or []):
        for key in ("h", "t"):
            value = label.get(key)
            if not isinstance(value, int) or not 0 <= value < len(entities):
                fail(f"points at entity {value!r}, but the document has {len(entities)} entities", f"labels[{k}].{key}")
        if label["h"] == label["t"]:
            fail(f"head and tail are the same entity ({label['h']})", f"labels[{k}]")
        if relations is not None and label.get("r") not in relations:
            fail(f"unknown relation {label.get('r')!r}", f"labels[{k}].r")


def all_ordered_pairs(num_entities):
    """[P, 2] array of (head, tail) for every h != t, row-major (P = E * (E - 1))."""
    heads, tails = np.divmod(np.arange(num_entities * num_entities), num_entities)
    keep = heads != tails
    return np.stack([heads[keep], tails[keep]], axis=1)


def pair_position(head, tail, num_entities):
    """Position of (head, tail) in `all_ordered_pairs(num_entities)`."""
    return head * (num_entities - 1) + (tail if tail < head else tail - 1)


class DocREFeaturizer:
    """Turns DocRED-format documents into model features with one fast-tokenizer call per document.

    Args:
        tokenizer: a fast tokenizer; byte-level BPE tokenizers (RoBERTa, ...) need `add_prefix_space=True`.
        label2id: relation label -> column (0 = NA). Required to featurize `labels`.
        entity_marker: text inserted before and after each mention (`"*"` in ATLOP); `None` for no markers, in
            which case a mention is represented by its first sub-token.
    """

    def __init__(self, tokenizer, label2id=None, entity_marker="*"):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("DocREFeaturizer needs a fast tokenizer (word alignment comes from the tokenizers library).")
        self.tokenizer = tokenizer
        self.label2id = dict(label2id) if label2id is not None else None
        self.entity_marker = entity_marker

    @classmethod
    def from_model(cls, model, tokenizer=None):
        tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        if tokenizer is None:
            raise ValueError("The model has no tokenizer attached; pass `tokenizer=`.")
        return cls(tokenizer, label2id=model.config.label2id, entity_marker=model.config.entity_marker)

    # -- validation ------------------------------------------------------------------------------------------------

    def validate(self, document, index=None):
        """Raise [`DocREInputError`] naming the document and the field for anything the model cannot use."""
        validate_document(document, index=index, relations=self.label2id)

    # -- featurization ---------------------------------------------------------------------------------------------

    def __call__(self, document, index=None, with_labels=True):
        """Features of one document (see the module docstring). Raises [`DocREInputError`] on bad input."""
        self.validate(document, index)
        sents = document["sents"]
        entities = document["vertexSet"]
        marker = self.entity_marker

        # Words of the document, with a marker word before each mention start and after each mention end.
        starts = {(mention["sent_id"], mention["pos"][0]) for mentions in entities for mention in mentions}
        ends = {(mention["sent_id"], mention["pos"][1] - 1) for mentions in entities for mention in mentions}
        words = []
        start_word = {}  # (sent_id, word) -> index in `words` of the word that represents a mention start
        for s, sentence in enumerate(sents):
            for w, word in enumerate(sentence):
                if (s, w) in starts:
                    start_word[(s, w)] = len(words)
                    if marker is not None:
                        words.append(marker)
                words.append(word)
                if marker is not None and (s, w) in ends:
                    words.append(marker)

        # verbose=False: the model windows long documents, so the tokenizer's "too long" warning does not apply.
        encoding = self.tokenizer(
            words, is_split_into_words=True, add_special_tokens=True, truncation=False, verbose=False
        )
        input_ids = encoding["input_ids"]
        word_ids = np.array([-1 if w is None else w for w in encoding.word_ids()])
        # First token of each word; a word the tokenizer drops entirely (e.g. a lone control character) takes the
        # next word's first token.
        first_token = np.full(len(words) + 1, len(input_ids) - 1)
        real = word_ids >= 0
        unique_words, first = np.unique(word_ids[real], return_index=True)
        first_token[unique_words] = np.flatnonzero(real)[first]
        first_token = np.minimum.accumulate(first_token[::-1])[::-1]

        mention_index = [
            [int(first_token[start_word[(m["sent_id"], m["pos"][0])]]) for m in mentions] for mentions in entities
        ]
        num_entities = len(entities)
        features = {
            "title": document.get("title"),
            "input_ids": list(input_ids),
            "mention_index": mention_index,
            "pair_index": all_ordered_pairs(num_entities).tolist(),
        }
        if with_labels and document.get("labels") is not None:
            if self.label2id is None:
                raise ValueError("DocREFeaturizer: `label2id` is needed to featurize labels.")
            compact = {
                (pair_position(label["h"], label["t"], num_entities), self.label2id[label["r"]])
                for label in document["labels"]
            }
            features["labels"] = [list(item) for item in sorted(compact)]
        return features

    def featurize(self, documents, errors="raise", with_labels=True):
        """Features of many documents.

        Args:
            errors: `"raise"` stops at the first bad document with a [`DocREInputError`] whose `processed`
                attribute holds the features made so far; `"skip"` leaves bad documents out and warns once with
                their count and reasons.
        Returns:
            list of feature dicts (with `errors="skip"`, only for the good documents).
        """
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
        features, problems = [], []
        for index, document in enumerate(documents):
            try:
                features.append(self(document, index=index, with_labels=with_labels))
            except DocREInputError as error:
                if errors == "raise":
                    error.processed = features
                    raise
                problems.append(str(error))
        if problems:
            shown = "\n  ".join(problems[:10])
            more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
            warnings.warn(f"Skipped {len(problems)} of {len(documents)} documents:\n  {shown}{more}", stacklevel=2)
        return features

    def map_batch(self, batch):
        """For `datasets.Dataset.map(featurizer.map_batch, batched=True)`: columns of documents -> feature columns."""
        keys = list(batch)
        documents = [dict(zip(keys, values)) for values in zip(*(batch[k] for k in keys))]
        documents = [_from_arrow(document) for document in documents]
        features = self.featurize(documents)
        return {key: [f.get(key) for f in features] for key in features[0]} if features else {}


def _from_arrow(document):
    """`datasets` stores a list of dicts as a dict of lists when the schema is nested; undo that."""
    entities = document.get("vertexSet")
    if entities and isinstance(entities[0], dict):
        entities = [
            [dict(zip(mentions, values)) for values in zip(*mentions.values())] for mentions in entities
        ]
        document = {**document, "vertexSet": entities}
    labels = document.get("labels")
    if isinstance(labels, dict):
        document = {**document, "labels": [dict(zip(labels, values)) for values in zip(*labels.values())]}
    return document


class DocREDataCollator:
    """Pads compact per-document features into the model's batch tensors.

    Returns `input_ids`, `attention_mask` [B, L]; `mention_index` [B, E, M] (-1 pad); `pair_index` [B, P, 2]
    (-1 pad); and, when every feature has `labels`, multi-hot `labels` [B, P, R] with padded pairs -100.

    Args:
        pad_token_id: the tokenizer's pad id.
        num_relations: R, the number of relation columns including NA (= `config.num_relations`).
    """

    def __init__(self, pad_token_id, num_relations):
        self.pad_token_id = pad_token_id if pad_token_id is not None else 0
        self.num_relations = num_relations

    @classmethod
    def from_model(cls, model, tokenizer=None):
        tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        return cls(tokenizer.pad_token_id, model.config.num_relations)

    def __call__(self, features):
        batch_size = len(features)
        length = max(len(f["input_ids"]) for f in features)
        num_entities = max(1, max(len(f["mention_index"]) for f in features))
        num_mentions = max(1, max((len(m) for f in features for m in f["mention_index"]), default=1))
        num_pairs = max(1, max(len(f["pair_index"]) for f in features))

        input_ids = torch.full((batch_size, length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, length), dtype=torch.long)
        mention_index = torch.full((batch_size, num_entities, num_mentions), -1, dtype=torch.long)
        pair_index = torch.full((batch_size, num_pairs, 2), -1, dtype=torch.long)
        for b, feature in enumerate(features):
            ids = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            input_ids[b, : len(ids)] = ids
            attention_mask[b, : len(ids)] = 1
            for e, mentions in enumerate(feature["mention_index"]):
                mention_index[b, e, : len(mentions)] = torch.as_tensor(mentions, dtype=torch.long)
            if len(feature["pair_index"]):
                pairs = torch.as_tensor(feature["pair_index"], dtype=torch.long).view(-1, 2)
                pair_index[b, : len(pairs)] = pairs
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mention_index": mention_index,
            "pair_index": pair_index,
        }
        if all(f.get("labels") is not None for f in features):
            labels = torch.full((batch_size, num_pairs, self.num_relations), -100.0)
            for b, feature in enumerate(features):
                real = len(feature["pair_index"])
                labels[b, :real] = 0.0
                compact = torch.as_tensor(feature["labels"], dtype=torch.long).view(-1, 2)
                if len(compact):
                    labels[b, compact[:, 0], compact[:, 1]] = 1.0
                labels[b, :real, 0] = (labels[b, :real, 1:] == 0).all(-1).float()
            batch["labels"] = labels
        return batch
