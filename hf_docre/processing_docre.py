"""DocRED-format documents -> model features, and the collator that pads them into the model's batch contract.

Loaded through ``trust_remote_code`` by the pipeline: flat sibling, torch/numpy/transformers only.

A DocRED-format document is a dict with `title`, `sents` (list of sentences, each a list of words), `vertexSet`
(list of entities, each a list of mentions `{"name", "pos": [start, end), "sent_id", "type"}`) and optionally
`labels` (list of `{"h", "t", "r", "evidence"}`).

Features of one document (compact, so `datasets` stores them cheaply):
- `title`: the document's title (metadata; the collator ignores it);
- `input_ids`: list[int], the whole document with markers and special tokens (never truncated);
- `mention_index`: list (per entity) of lists of token indices of each mention's start marker;
- `mention_end` (with `mention_spans=True`): the same nesting, the token after each mention's last token (so a
  mention's tokens are `mention_index` to `mention_end`, its start marker included when there are markers);
- `token_sentence` (with `sentence_spans=True`, for evidence), compact: the first token of each sentence (its
  markers included), then the token after the last sentence ([S + 1]); the collator expands it to the model's
  `token_sentence` [B, L] (named like the model input, so the Trainer's column filter keeps it);
- `evidence_labels` (with `sentence_spans=True` and labels): [pair position, sentence] once per label naming it;
- `pair_index`: only when the document restricts the pairs to score (`candidate_pairs`, as in CDR/GDA): list of
  [head, tail] entity ids. Absent (or None) means all ordered pairs h != t, row-major (`all_ordered_pairs`); the
  collator builds those from the entity count, so the common case stores nothing per pair;
- `labels` (when the document has labels): list of [pair position, relation id]; the collator expands them to
  the multi-hot [P, R] rows the model takes (column 0 = NA where a pair has no relation).

An optional document field `candidate_pairs` (list of [head, tail]) limits the pairs to those; every label must then
be one of them.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Collection, Iterable

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


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_text(value):
    """A str that is valid Unicode (no lone surrogates, which cannot be written to Arrow or JSON)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# `entity_marker` value for one marker pair per entity (DSDocRE).
INDEXED_MARKERS = "indexed"


def add_marker_tokens(tokenizer, config) -> list[str]:
    """Make every token a DSDocRE-style model writes into its input one token of `tokenizer`: the indexed entity
    markers, the blank and the mention-mask tokens (`config.entity_marker == "indexed"` only). Tokens already in the
    vocabulary (BERT's `[unusedN]`) keep their ids. Returns the tokens added to the vocabulary as new ids."""
    if config.entity_marker != INDEXED_MARKERS:
        return []
    first = 0 if getattr(config, "marker_order", "entity") == "ranked" else 1
    tokens = [config.marker_format.format(i) for i in range(first, first + 2 * config.max_marked_entities)]
    tokens += [token for token in (config.blank_token, config.mention_mask_token) if first == 1 or token not in tokens]
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"DocREConfig: the markers, blank_token and mention_mask_token must differ (check "
                         f"max_marked_entities={config.max_marked_entities} against {config.mention_mask_token!r})")
    new = [token for token in tokens if token not in tokenizer.get_vocab()]
    tokenizer.add_tokens(tokens, special_tokens=True)
    return new


def validate_document(document: dict, index: int | None = None, relations: Collection[str] | None = None) -> dict:
    """Check a DocRED-format document; raise [`DocREInputError`] naming the document, its index and the field.

    Checks: the document is a dict, its `title` (when present) a string; sentences present and lists of words,
    each a valid Unicode string; every entity a non-empty list of mention dicts; each mention's `sent_id` an int
    sentence of the document and its `pos` two ints spanning a non-empty part of that sentence; `labels` (when
    not None) a list of dicts whose `h`/`t` are distinct entities of the document (ints), whose `r` is a string (in
    `relations`, when given) and whose `evidence` is a list of sentence ids. No value is converted: `pos
    [4.7, 5.7]`, evidence `"01"` or a word `None` are errors, not silently changed.
    """
    if not isinstance(document, dict):
        raise DocREInputError(f"must be a JSON object (dict), got {type(document).__name__}", index=index)
    title = document.get("title")

    def fail(message, field):
        raise DocREInputError(message, title=title, index=index, field=field)

    if "title" in document and not _valid_text(title):
        fail(f"must be a string, got {title!r}", "title")
    sents = document.get("sents")
    if not isinstance(sents, (list, tuple)) or not sents:
        fail(f"must be a non-empty list of sentences, got {sents!r}"[:200], "sents")
    for s, sentence in enumerate(sents):
        if not isinstance(sentence, (list, tuple)):
            fail(f"must be a list of words, got {type(sentence).__name__}", f"sents[{s}]")
        for w, word in enumerate(sentence):
            if not _valid_text(word):
                fail(f"must be a string of valid Unicode, got {word!r}", f"sents[{s}][{w}]")
    entities = document.get("vertexSet")
    if entities is None:
        fail("is missing", "vertexSet")
    if not isinstance(entities, (list, tuple)):
        fail(f"must be a list of entities, got {type(entities).__name__}", "vertexSet")
    for e, mentions in enumerate(entities):
        if not isinstance(mentions, (list, tuple)):
            fail(f"must be a list of mentions, got {type(mentions).__name__}", f"vertexSet[{e}]")
        if not mentions:
            fail("entity has no mentions", f"vertexSet[{e}]")
        for m, mention in enumerate(mentions):
            if not isinstance(mention, dict):
                fail(f"must be a dict with name, pos, sent_id, got {type(mention).__name__}", f"vertexSet[{e}][{m}]")
            sent_id = mention.get("sent_id")
            if not _is_int(sent_id) or not 0 <= sent_id < len(sents):
                fail(f"sent_id {sent_id!r} is not a sentence of the document ({len(sents)} sentences)",
                     f"vertexSet[{e}][{m}].sent_id")
            pos = mention.get("pos")
            sentence_length = len(sents[sent_id])
            if (not isinstance(pos, (list, tuple)) or len(pos) != 2 or not all(_is_int(x) for x in pos)
                    or not 0 <= pos[0] < pos[1] <= sentence_length):
                fail(f"mention span {pos!r} is not two word positions inside sentence {sent_id} ({sentence_length} words)",
                     f"vertexSet[{e}][{m}].pos")
            if "name" in mention and not _valid_text(mention["name"]):
                fail(f"must be a string, got {mention['name']!r}", f"vertexSet[{e}][{m}].name")
            global_pos = mention.get("global_pos")
            if global_pos is not None and (not isinstance(global_pos, (list, tuple)) or not all(_is_int(x) for x in global_pos)):
                fail(f"must be a list of ints (word positions in the document), got {global_pos!r}", f"vertexSet[{e}][{m}].global_pos")
            if mention.get("index") is not None and not isinstance(mention["index"], str):
                fail(f"must be a string (DocRED writes \"<entity>_<mention>\", e.g. \"0_1\"), got {mention['index']!r}",
                     f"vertexSet[{e}][{m}].index")
    candidates = document.get("candidate_pairs")
    if candidates is not None:
        for k, pair in enumerate(candidates):
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(_is_int(x) and 0 <= x < len(entities) for x in pair) or pair[0] == pair[1]):
                fail(f"{pair!r} is not a pair of two distinct entities of the document ({len(entities)} entities)",
                     f"candidate_pairs[{k}]")
        candidates = {tuple(pair) for pair in candidates}
    labels = document.get("labels")
    if labels is not None and not isinstance(labels, (list, tuple)):
        fail(f"must be a list of labels (or null for an unlabelled document), got {type(labels).__name__}", "labels")
    for k, label in enumerate(labels or []):
        if not isinstance(label, dict):
            fail(f"must be a dict with h, t, r, got {type(label).__name__}", f"labels[{k}]")
        for key in ("h", "t"):
            value = label.get(key)
            if not _is_int(value) or not 0 <= value < len(entities):
                fail(f"points at entity {value!r}, but the document has {len(entities)} entities", f"labels[{k}].{key}")
        if label["h"] == label["t"]:
            fail(f"head and tail are the same entity ({label['h']})", f"labels[{k}]")
        if not isinstance(label.get("r"), str):
            fail(f"must be a relation id string, got {label.get('r')!r}", f"labels[{k}].r")
        if relations is not None and label.get("r") not in relations:
            fail(f"unknown relation {label.get('r')!r}", f"labels[{k}].r")
        evidence = label.get("evidence")
        if evidence is not None and (not isinstance(evidence, (list, tuple))
                                     or not all(_is_int(x) and 0 <= x < len(sents) for x in evidence)):
            fail(f"must be a list of sentence ids of the document ({len(sents)} sentences), got {evidence!r}",
                 f"labels[{k}].evidence")
        if candidates is not None and (label["h"], label["t"]) not in candidates:
            fail(f"pair ({label['h']}, {label['t']}) is not in the document's candidate_pairs", f"labels[{k}]")


def check_output_path(path, option="output", inputs=()) -> str:
    """Raise a ValueError naming `option` when `path` cannot be written, before any work is done: a folder, a parent
    that is missing or not a folder or not writable, or one of the `inputs` (which would be overwritten)."""
    import os

    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"{option} must be a file path, got {path!r}")
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{option} {path!r} is a folder; give a file path")
    if not os.path.exists(parent):
        raise ValueError(f"{option} {path!r}: its folder {parent!r} does not exist (create it first)")
    if not os.path.isdir(parent):
        raise ValueError(f"{option} {path!r}: {parent!r} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{option} {path!r}: the folder {parent!r} is not writable")
    for source in inputs:
        if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
            raise ValueError(f"{option} {path!r} is also an input: writing it would destroy the input; choose another path")
    return path


def _without_prefix_space(tokenizer_json):
    """A serialized tokenizers-library tokenizer whose byte-level pre-tokenizer adds no space before a word."""
    def visit(node):
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel" and "add_prefix_space" in node:
                node["add_prefix_space"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(tokenizer_json.get("pre_tokenizer"))
    return tokenizer_json


def all_ordered_pairs(num_entities: int) -> np.ndarray:
    """[P, 2] array of (head, tail) for every h != t, row-major (P = E * (E - 1))."""
    heads, tails = np.divmod(np.arange(num_entities * num_entities), num_entities)
    keep = heads != tails
    return np.stack([heads[keep], tails[keep]], axis=1)


def pair_position(head, tail, num_entities: int):
    """Position of (head, tail) in `all_ordered_pairs(num_entities)`; `head` and `tail` are ints, or integer arrays
    of one shape (then an array of positions)."""
    if isinstance(head, np.ndarray) or isinstance(tail, np.ndarray):
        head, tail = np.asarray(head), np.asarray(tail)
        return head * (num_entities - 1) + np.where(tail < head, tail, tail - 1)
    return head * (num_entities - 1) + (tail if tail < head else tail - 1)


def feature_pairs(feature: dict) -> np.ndarray:
    """[P, 2] array of the (head, tail) pairs a feature scores, in the order of its logits rows."""
    pairs = feature.get("pair_index")
    if pairs is None:
        return all_ordered_pairs(len(feature["mention_index"]))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def num_feature_pairs(feature: dict) -> int:
    pairs = feature.get("pair_index")
    if pairs is None:
        num_entities = len(feature["mention_index"])
        return num_entities * (num_entities - 1)
    return len(pairs)


class DocREFeaturizer:
    """Turns DocRED-format documents into model features.

    Tokenization is exactly that of one fast-tokenizer call per document with pre-split words
    (`is_split_into_words=True`), where the tokenizers library normalises and splits every word on its own. So the
    featurizer tokenizes each distinct word once, in batches, keeps its pieces in a cache, and builds a document by
    concatenating them between the tokenizer's special tokens. The result is identical to the per-document call
    (`cache_words=False` does that call, for checking).

    Args:
        tokenizer: a fast tokenizer; byte-level BPE tokenizers (RoBERTa, ...) need `add_prefix_space=True`.
        label2id: relation label -> column (0 = NA). Required to featurize `labels`.
        entity_marker: text inserted before and after each mention (`"*"` in ATLOP); `None` for no markers, in
            which case a mention is represented by its first sub-token; `"indexed"` for one marker pair per entity
            (DSDocRE, after Soares et al.): entity i gets `marker_format.format(2i+1)` before and
            `marker_format.format(2i+2)` after each of its mentions (each must be one token: see
            `add_marker_tokens`).
        marker_format: the indexed markers' text (`"[unused{}]"`: BERT's unused vocabulary entries).
        marker_order: `"entity"` (marker pair i for entity i) or `"ranked"` (the released DSDocRE code's fine-tuning:
            numbered by first appearance in `candidate_pairs`, from `format(0)`; entities in no pair unmarked). See
            `DocREConfig.marker_order`.
        max_marked_entities: with indexed markers, a document with more entities is refused (it would run out of
            marker tokens).
        cache_words: reuse word pieces across documents (default). The cache is not pickled, so `datasets.map`
            fingerprints stay stable.
        mention_spans: also give `mention_end` (for `mention_representation="span"`).
        max_cached_words: the cache is emptied when it grows past this many words.
        word_tokenization: `"in_context"` (default, as above) or `"isolated"`: every word tokenized alone with no
            space before it, as the released ATLOP/DREEAM/KD-DocRE code does (`tokenizer.tokenize(word)`); this
            differs only for byte-level BPE tokenizers (RoBERTa), whose words then lose their leading-space marker.
    """

    def __init__(self, tokenizer, label2id=None, entity_marker="*", cache_words=True, max_cached_words=1_000_000,
                 mention_spans=False, marker_format="[unused{}]", max_marked_entities=42, marker_order="entity",
                 word_tokenization="in_context", sentence_spans=False):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("DocREFeaturizer needs a fast tokenizer (word alignment comes from the tokenizers library).")
        self.tokenizer = tokenizer
        self.label2id = dict(label2id) if label2id is not None else None
        self.entity_marker = entity_marker
        self.marker_format = marker_format
        self.max_marked_entities = max_marked_entities
        if marker_order not in ("entity", "ranked"):
            raise ValueError(f"marker_order must be 'entity' or 'ranked', got {marker_order!r}")
        self.marker_order = marker_order
        if word_tokenization not in ("in_context", "isolated"):
            raise ValueError(f"word_tokenization must be 'in_context' or 'isolated', got {word_tokenization!r}")
        self.word_tokenization = word_tokenization
        self.sentence_spans = sentence_spans
        self.cache_words = cache_words
        self.mention_spans = mention_spans
        self.max_cached_words = max_cached_words
        self._pieces = {}
        self._special = None
        self._backend = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pieces"], state["_special"], state["_backend"] = {}, None, None
        return state

    @classmethod
    def from_model(cls, model, tokenizer=None, **kwargs) -> DocREFeaturizer:
        tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        if tokenizer is None:
            raise ValueError("The model has no tokenizer attached; pass `tokenizer=`.")
        config = model.config
        kwargs.setdefault("mention_spans", getattr(config, "mention_representation", "start") == "span")
        kwargs.setdefault("label2id", config.label2id)
        kwargs.setdefault("word_tokenization", getattr(config, "word_tokenization", "in_context"))
        kwargs.setdefault("sentence_spans", getattr(config, "evidence_threshold", None) is not None)
        if config.entity_marker == INDEXED_MARKERS:
            kwargs.setdefault("marker_format", config.marker_format)
            kwargs.setdefault("max_marked_entities", config.max_marked_entities)
            kwargs.setdefault("marker_order", getattr(config, "marker_order", "entity"))
        return cls(tokenizer, entity_marker=config.entity_marker, **kwargs)

    # -- validation ------------------------------------------------------------------------------------------------

    def validate(self, document: dict, index: int | None = None) -> dict:
        """Raise [`DocREInputError`] naming the document and the field for anything the model cannot use."""
        validate_document(document, index=index, relations=self.label2id)
        ranked = self.entity_marker == INDEXED_MARKERS and self.marker_order == "ranked"
        if ranked and document.get("candidate_pairs") is None:
            raise DocREInputError(
                "has no `candidate_pairs`; marker_order='ranked' numbers the entity markers by the ranker's candidate "
                "pairs (best first). Score the document with the ranker first (hf_docre.denoising), or use marker_order='entity'",
                title=document.get("title"), index=index, field="candidate_pairs",
            )
        marked = len(self.marker_ranks(document)) if ranked else len(document["vertexSet"])
        if self.entity_marker == INDEXED_MARKERS and marked > self.max_marked_entities:
            raise DocREInputError(
                f"has {marked} {'entities in candidate pairs' if ranked else 'entities'}; indexed entity markers allow at most "
                f"{self.max_marked_entities} (config `max_marked_entities`, each entity needs 2 marker tokens)",
                title=document.get("title"), index=index, field="vertexSet",
            )

    @staticmethod
    def marker_ranks(document):
        """marker_order='ranked': {entity: j}, j = order of first appearance in `candidate_pairs`."""
        ranks = {}
        for head, tail in document.get("candidate_pairs") or ():
            for entity in (int(head), int(tail)):
                ranks.setdefault(entity, len(ranks))
        return ranks

    def marker_words(self, entity, ranks=None):
        """(start marker, end marker) text of an entity: shared (`"*"`), indexed (entity-specific), or with
        `ranks` (marker_order='ranked') numbered by rank; None for an entity without a rank (no markers)."""
        if self.entity_marker == INDEXED_MARKERS:
            if ranks is not None:
                j = ranks.get(entity)
                return None if j is None else (self.marker_format.format(2 * j), self.marker_format.format(2 * j + 1))
            return self.marker_format.format(2 * entity + 1), self.marker_format.format(2 * entity + 2)
        return self.entity_marker, self.entity_marker

    # -- tokenization ----------------------------------------------------------------------------------------------

    def _special_tokens(self):
        """(ids before the first word, ids after the last word) that the tokenizer adds to a sequence."""
        if self._special is None:
            encoding = self.tokenizer(["a"], is_split_into_words=True, add_special_tokens=True)
            ids, word_ids = encoding["input_ids"], encoding.word_ids()
            real = [i for i, w in enumerate(word_ids) if w is not None]
            self._special = (ids[: real[0]], ids[real[-1] + 1 :])
        return self._special

    def _cache_pieces(self, words):
        missing = list({word for word in words if word not in self._pieces})
        if not missing:
            return
        if len(self._pieces) + len(missing) > self.max_cached_words:
            # Start over, but with every word asked for now: the caller looks all of them up next.
            self._pieces.clear()
            missing = list(set(words))
        backend = self._word_tokenizer()
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # no offsets: not needed here
        encodings = encode([[word] for word in missing], is_pretokenized=True, add_special_tokens=False)
        self._pieces.update(zip(missing, (encoding.ids for encoding in encodings)))

    def _word_tokenizer(self):
        """A private copy of the tokenizers-library tokenizer with no truncation or padding, to tokenize single words
        without the per-encoding overhead of the transformers wrapper."""
        if self._backend is None:
            from tokenizers import Tokenizer

            serialized = self.tokenizer.backend_tokenizer.to_str()
            if self.word_tokenization == "isolated":
                serialized = json.dumps(_without_prefix_space(json.loads(serialized)))
            backend = Tokenizer.from_str(serialized)
            backend.no_truncation()
            backend.no_padding()
            self._backend = backend
        return self._backend

    def _tokenize(self, words):
        """input_ids of the word sequence with special tokens, and the first token of every word plus, last, the
        position after the last word ([len(words) + 1])."""
        if not self.cache_words and self.word_tokenization == "in_context":
            # verbose=False: the model windows long documents, so the tokenizer's "too long" warning does not apply.
            encoding = self.tokenizer(words, is_split_into_words=True, add_special_tokens=True, truncation=False, verbose=False)
            input_ids = list(encoding["input_ids"])
            word_ids = np.array([-1 if w is None else w for w in encoding.word_ids()], dtype=np.int64)
            real = word_ids >= 0
            content_end = int(np.flatnonzero(real)[-1]) + 1 if real.any() else len(input_ids)
            first_token = np.full(len(words) + 1, content_end)
            unique_words, first = np.unique(word_ids[real], return_index=True)
            first_token[unique_words] = np.flatnonzero(real)[first]
            # A word the tokenizer drops entirely (e.g. a lone control character) takes the next word's first token.
            first_token = np.minimum.accumulate(first_token[::-1])[::-1]
        else:
            self._cache_pieces(words)
            prefix, suffix = self._special_tokens()
            pieces = [self._pieces[word] for word in words]
            lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
            # The first token of a word with no pieces is then the next word's first token, as above.
            ends = len(prefix) + np.cumsum(lengths)
            first_token = np.concatenate([ends - lengths, ends[-1:] if len(ends) else [len(prefix)]])
            input_ids = list(prefix)
            for word_pieces in pieces:
                input_ids += word_pieces
            input_ids += suffix
        return input_ids, first_token

    # -- featurization ---------------------------------------------------------------------------------------------

    def __call__(self, document, index=None, with_labels=True, with_word_map=False):
        """Features of one document (see the module docstring). Raises [`DocREInputError`] on bad input.

        With `with_word_map=True` the features also hold `token_word`: for every token, the index of the
        document word it belongs to (words numbered across sentences), -1 for special tokens and markers.
        """
        self.validate(document, index)
        sents = document["sents"]
        entities = document["vertexSet"]
        marker = self.entity_marker

        # Words of the document, with marker words before each mention start and after each mention end (end markers
        # come before start markers at the same boundary). Shared markers: one marker word per boundary; indexed
        # markers: one per entity starting or ending there (`key` below: the entity, or None when shared).
        indexed = marker == INDEXED_MARKERS
        ranks = self.marker_ranks(document) if indexed and self.marker_order == "ranked" else None
        starts, ends = {}, {}  # sent_id -> {word position: entity ids whose mention starts / ends there}
        for e, mentions in enumerate(entities):
            for mention in mentions:
                starts.setdefault(mention["sent_id"], {}).setdefault(mention["pos"][0], set()).add(e)
                ends.setdefault(mention["sent_id"], {}).setdefault(mention["pos"][1], set()).add(e)
        words = []
        start_word = {}  # (sent_id, word, key) -> index in `words` of the word that represents a mention start
        end_word = {}  # (sent_id, end, key) -> index in `words` of the word after a mention ending there
        marker_positions = []
        sentence_first_word = []  # index in `words` where each sentence starts (its markers included), then the end
        for s, sentence in enumerate(sents):
            sentence_first_word.append(len(words))
            sentence_starts = starts.get(s)
            if sentence_starts is None and (marker is None or s not in ends):
                words.extend(sentence)
                continue
            sentence_starts = sentence_starts or {}
            sentence_ends = ends.get(s, {}) if marker is not None else {}
            previous = 0
            for boundary in sorted(sentence_starts.keys() | sentence_ends.keys()):
                words.extend(sentence[previous:boundary])
                ending = sorted(sentence_ends.get(boundary, ()), reverse=True) if indexed else (
                    [None] if boundary in sentence_ends else [])
                for key in ending:
                    end_word[(s, boundary, key)] = len(words)
                    pair = self.marker_words(key, ranks) if indexed else (marker, marker)
                    if pair is not None:  # ranked markers: an entity in no candidate pair is not marked
                        marker_positions.append(len(words))
                        words.append(pair[1])
                beginning = sorted(sentence_starts.get(boundary, ())) if indexed else (
                    [None] if boundary in sentence_starts else [])
                for key in beginning:
                    start_word[(s, boundary, key)] = len(words)
                    pair = self.marker_words(key, ranks) if indexed else (marker, marker)
                    if marker is not None and pair is not None:
                        marker_positions.append(len(words))
                        words.append(pair[0])
                previous = boundary
            words.extend(sentence[previous:])
        sentence_first_word.append(len(words))

        input_ids, first_token = self._tokenize(words)
        word_map = None
        if with_word_map:
            word_map = _token_words(words, marker_positions, first_token, len(input_ids))
        first_token = first_token.tolist()
        if marker is None:  # a mention is its own tokens: one whose words give none would be a zero embedding
            for e, mentions in enumerate(entities):
                for m, mention in enumerate(mentions):
                    begin = start_word[(mention["sent_id"], mention["pos"][0], None)]
                    if first_token[begin] == first_token[begin + mention["pos"][1] - mention["pos"][0]]:
                        raise DocREInputError(
                            f"mention {mention.get('name', '')!r} has no tokens: its words are empty or only characters the "
                            "tokenizer drops (e.g. a zero-width space)", title=document.get("title"), index=index,
                            field=f"vertexSet[{e}][{m}].pos")
        last = len(input_ids) - 1
        key = (lambda e: e) if indexed else (lambda e: None)
        mention_index = [[min(first_token[start_word[(m["sent_id"], m["pos"][0], key(e))]], last) for m in mentions]
                         for e, mentions in enumerate(entities)]
        features = {"title": document.get("title"), "input_ids": input_ids, "mention_index": mention_index}
        if word_map is not None:
            features["token_word"] = word_map
        if self.sentence_spans:
            features["token_sentence"] = [int(first_token[i]) for i in sentence_first_word]
        if self.mention_spans:
            if marker is None:  # the word after the mention: the next sentence's first word, or the end
                offsets = np.cumsum([0] + [len(sentence) for sentence in sents]).tolist()
                features["mention_end"] = [[first_token[offsets[m["sent_id"]] + m["pos"][1]] for m in mentions] for mentions in entities]
            else:
                features["mention_end"] = [[first_token[end_word[(m["sent_id"], m["pos"][1], key(e))]] for m in mentions]
                                           for e, mentions in enumerate(entities)]
        candidates = document.get("candidate_pairs")
        if candidates is not None:
            features["pair_index"] = [list(pair) for pair in candidates]
        if with_labels and document.get("labels") is not None:
            if self.label2id is None:
                raise ValueError("DocREFeaturizer: `label2id` is needed to featurize labels.")
            if candidates is None:
                num_entities = len(entities)
                positions = {(label["h"], label["t"]): pair_position(label["h"], label["t"], num_entities) for label in document["labels"]}
            else:
                positions = {tuple(pair): p for p, pair in enumerate(candidates)}
            compact = {(positions[(label["h"], label["t"])], self.label2id[label["r"]]) for label in document["labels"]}
            features["labels"] = [list(item) for item in sorted(compact)]
            if self.sentence_spans:
                # [pair position, sentence] once per label of the pair that names the sentence (DREEAM's counts).
                features["evidence_labels"] = sorted(
                    [positions[(label["h"], label["t"])], int(s)] for label in document["labels"] for s in label.get("evidence") or ()
                )
        return features

    def featurize(self, documents: Iterable[dict], errors: str = "raise", with_labels: bool = True) -> list[dict]:
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
        if not isinstance(documents, (list, tuple)):
            documents = list(documents)  # a generator is read twice (the word cache, then the documents)
        features, problems = [], []
        if self.cache_words:  # one tokenizer call for the new words of all documents
            try:
                self._cache_pieces([word for document in documents for sentence in document["sents"] for word in sentence])
            except (KeyError, TypeError):
                pass  # a malformed document; its own validation below names it
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

    def map_batch(self, batch: dict[str, list]) -> dict[str, list]:
        """For `datasets.Dataset.map(featurizer.map_batch, batched=True)`: columns of documents -> feature columns."""
        keys = list(batch)
        documents = [dict(zip(keys, values)) for values in zip(*(batch[k] for k in keys))]
        documents = [_from_arrow(document) for document in documents]
        features = self.featurize(documents)
        keys = list(dict.fromkeys(key for f in features for key in f))
        return {key: [f.get(key) for f in features] for key in keys}


def _token_words(words, marker_positions, first_token, num_tokens):
    """[num_tokens] index of the document word (numbered across sentences) of every token; -1 for special tokens
    and markers. `words` is the marked word sequence, `marker_positions` the indices of its markers, and
    `first_token` [len(words) + 1] the first token of each word (the words' tokens are contiguous)."""
    word_ids = np.zeros(len(words), dtype=np.int64)
    word_ids[marker_positions] = -1
    is_word = word_ids == 0
    word_ids[is_word] = np.arange(int(is_word.sum()))
    first_token = np.asarray(first_token, dtype=np.int64)
    token_word = np.full(num_tokens, -1, dtype=np.int64)
    token_word[first_token[0] : first_token[-1]] = np.repeat(word_ids, np.diff(first_token))
    return token_word.tolist()


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
    (-1 pad; all ordered pairs of a feature without its own `pair_index`); `token_sentence` [B, L] (the sentence of
    each token, -1 for special tokens and padding) and `evidence_labels` [B, P, S] (counts) when every feature has them; `mention_end` [B, E, M] and
    `teacher_logits` [B, P, R] when every feature has them; `pair_loss_weight` [B, P] (1 where a feature gives no weight)
    when any feature has `pair_loss_weight` rows ([pair position, weight]); and, when every feature has `labels`,
    multi-hot `labels` [B, P, R] with padded pairs -100.

    Args:
        pad_token_id: the tokenizer's pad id.
        num_relations: R, the number of relation columns including NA (= `config.num_relations`).
    """

    def __init__(self, pad_token_id, num_relations):
        self.pad_token_id = pad_token_id if pad_token_id is not None else 0
        self.num_relations = num_relations

    @classmethod
    def from_model(cls, model, tokenizer=None) -> DocREDataCollator:
        tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        return cls(tokenizer.pad_token_id, model.config.num_relations)

    def __call__(self, features):
        batch_size = len(features)
        length = max(len(f["input_ids"]) for f in features)
        num_entities = max(1, max(len(f["mention_index"]) for f in features))
        num_mentions = max(1, max((len(m) for f in features for m in f["mention_index"]), default=1))
        pair_lists = [feature_pairs(f) for f in features]
        num_pairs = max(1, max(len(pairs) for pairs in pair_lists))

        input_ids = torch.full((batch_size, length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, length), dtype=torch.long)
        mention_index = torch.full((batch_size, num_entities, num_mentions), -1, dtype=torch.long)
        pair_index = torch.full((batch_size, num_pairs, 2), -1, dtype=torch.long)
        with_ends = all(f.get("mention_end") is not None for f in features)
        mention_end = torch.full((batch_size, num_entities, num_mentions), -1, dtype=torch.long) if with_ends else None
        for b, feature in enumerate(features):
            ids = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            input_ids[b, : len(ids)] = ids
            attention_mask[b, : len(ids)] = 1
            for e, mentions in enumerate(feature["mention_index"]):
                mention_index[b, e, : len(mentions)] = torch.as_tensor(mentions, dtype=torch.long)
            if with_ends:
                for e, ends in enumerate(feature["mention_end"]):
                    mention_end[b, e, : len(ends)] = torch.as_tensor(ends, dtype=torch.long)
            if len(pair_lists[b]):
                pair_index[b, : len(pair_lists[b])] = torch.from_numpy(pair_lists[b])
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mention_index": mention_index,
            "pair_index": pair_index,
        }
        if with_ends:
            batch["mention_end"] = mention_end
        if all(f.get("token_sentence") is not None for f in features):
            token_sentence = torch.full((batch_size, length), -1, dtype=torch.long)
            for b, feature in enumerate(features):
                bounds = torch.as_tensor(feature["token_sentence"], dtype=torch.long)
                sizes = bounds[1:] - bounds[:-1]
                token_sentence[b, int(bounds[0]) : int(bounds[-1])] = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
            batch["token_sentence"] = token_sentence
            if all(f.get("evidence_labels") is not None for f in features):
                num_sentences = max(len(f["token_sentence"]) - 1 for f in features)
                evidence = torch.zeros(batch_size, num_pairs, max(1, num_sentences))
                for b, feature in enumerate(features):
                    entries = torch.as_tensor(feature["evidence_labels"], dtype=torch.long).view(-1, 2)
                    if len(entries):
                        evidence[b].index_put_((entries[:, 0], entries[:, 1]), torch.ones(len(entries)), accumulate=True)
                batch["evidence_labels"] = evidence
        if all(f.get("teacher_evidence") is not None for f in features):
            # A teacher's context weights over the tokens, stored flat ([P * L] per document, hf_docre.distillation).
            teacher_evidence = torch.zeros(batch_size, num_pairs, length)
            for b, feature in enumerate(features):
                tokens = len(feature["input_ids"])
                values = torch.as_tensor(np.asarray(feature["teacher_evidence"], dtype=np.float32)).view(-1, tokens)
                teacher_evidence[b, : len(values), :tokens] = values
            batch["teacher_evidence"] = teacher_evidence
        if all(f.get("teacher_logits") is not None for f in features):
            # A teacher's logits, stored flat ([P * R] per document, see hf_docre.distillation).
            teacher = torch.zeros(batch_size, num_pairs, self.num_relations)
            for b, feature in enumerate(features):
                values = torch.as_tensor(np.asarray(feature["teacher_logits"], dtype=np.float32)).view(-1, self.num_relations)
                if len(values) != len(pair_lists[b]):
                    raise ValueError(f"document {feature.get('title')!r}: teacher_logits has {len(values)} pairs, the feature {len(pair_lists[b])}")
                teacher[b, : len(values)] = values
            batch["teacher_logits"] = teacher
        if any(f.get("pair_loss_weight") is not None for f in features):
            # [pair position, weight] rows for the pairs whose loss is weighted (joined training documents).
            pair_loss_weight = torch.ones(batch_size, num_pairs)
            for b, feature in enumerate(features):
                rows = torch.as_tensor(feature.get("pair_loss_weight") or [], dtype=torch.float32).view(-1, 2)
                if len(rows):
                    pair_loss_weight[b, rows[:, 0].long()] = rows[:, 1]
            batch["pair_loss_weight"] = pair_loss_weight
        if all(f.get("labels") is not None for f in features):
            labels = torch.full((batch_size, num_pairs, self.num_relations), -100.0)
            for b, feature in enumerate(features):
                real = len(pair_lists[b])
                labels[b, :real] = 0.0
                compact = torch.as_tensor(feature["labels"], dtype=torch.long).view(-1, 2)
                if len(compact):
                    labels[b, compact[:, 0], compact[:, 1]] = 1.0
                labels[b, :real, 0] = (labels[b, :real, 1:] == 0).all(-1).float()
            batch["labels"] = labels
        return batch
