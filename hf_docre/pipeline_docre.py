"""`pipeline("doc-relation-extraction")`: relations between the entities of whole documents.

Loaded through ``trust_remote_code`` from a saved model folder (flat sibling; torch/transformers only).

Inputs: raw text (a string; a recogniser finds the entities, see `entities_docre.py`); `{"text": str, "entities":
[...]}` with entities either as `{"mentions": [[char_start, char_end], ...], "type": str}` or as the flat span list
NER tools give (`{"start", "end", "label"}`, optional `"entity_id"`; grouped into entities by id, else by name,
acronym and surname), plus optional `sentences` / `words` (your own segmentation) and `title` (without
`entities`, the recogniser runs); a DocRED-format document (`sents`, `vertexSet`, ...); a list of any of these; or a
`datasets.Dataset` of DocRED-format or `text` rows (batched, with a progress bar).

Output per document: a list of relations, best first, each
`{"head": {"index", "name", "type", "mentions"}, "tail": {...}, "relation": name, "relation_id": code,
"score": probability, "sentences": [sent_id, ...]}`. Each mention has `name`, `sent_id`, `pos` (word span in its
sentence) and, for text input, its character span `start`, `end`; `sentences` lists the sentences that mention the
head or the tail (text input adds their character spans as `sentence_spans`). With `return_context=True` each
relation also has `"context"`: the document words its localized context pooling weighs most,
`[{"word", "sent_id", "pos", "weight", ("start", "end")}, ...]`. `to_docred_predictions(outputs)` turns outputs into
the metric's and the submission writer's input.

The score is the probability that the relation beats the threshold: sigmoid(logit_r - logit_TH) for the
adaptive-thresholding and adaptive focal losses, sigmoid(logit_r) for the BCE head, P(relation) x P(r) for
two-step. `threshold=` keeps the relations whose score is above it, for every head.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from transformers import Pipeline

from .decoding_docre import decode_relations, relation_scores, select_by_score
from .entities_docre import recognize_entities, resolve_recognizer
from .processing_docre import DocREDataCollator, DocREFeaturizer, feature_pairs
from .render_docre import render
from .text_docre import SpanAlignmentError, text_to_document

__all__ = ["DocumentRelationExtractionPipeline", "SpanAlignmentError", "text_to_document", "to_docred_predictions"]

_OPTIONS = ("max_relations_per_pair", "threshold", "top_k", "return_context", "context_words", "snap_spans",
            "sentence_splitter", "errors", "recognizer", "label_map", "mention_grouping", "return_document", "html",
            "ranker", "candidates_per_entity", "candidates_cap", "max_sentence_distance")


def to_docred_predictions(outputs: Sequence) -> list:
    """Pipeline outputs (one relation list per document) -> per-document `{"h_idx", "t_idx", "r"}` lists, the input
    of the DocRED metric and of `hf_docre.data.write_submission` (with the documents, for their titles):

        predictions = to_docred_predictions(pipe(documents))
        metric.compute(predictions=predictions, references=documents)
        write_submission(predictions, "out", documents=documents)

    A single document's output (a list of relations) counts as one document.
    """
    if outputs and isinstance(outputs[0], dict):
        outputs = [outputs]
    predictions = []
    for relations in outputs:
        records = []
        for item in relations:
            record = {"h_idx": item["head"]["index"], "t_idx": item["tail"]["index"], "r": item["relation_id"]}
            if item.get("evidence") is not None:
                record["evidence"] = list(item["evidence"])
            records.append(record)
        predictions.append(records)
    return predictions


class DocumentRelationExtractionPipeline(Pipeline):
    """Document-level relation extraction with a DocRE model (see the module docstring for inputs and outputs).

    Options (at construction or per call; any other keyword raises):
        threshold (`float`): return relations whose score is above it (for every head: the score is the one
            reported, see the module docstring). Default: the model's own decision (ATL/AFL: the relation beats
            the TH class, i.e. score > 0.5; BCE: `config.global_threshold`; two-step: step 1 accepts the pair).
        max_relations_per_pair (`int`): at most this many relations per pair (default: the config's; <= 0: all).
        top_k (`int`): at most this many relations per document, the best first.
        return_context (`bool`): add `"context"`, the document words the pair's localized context pooling weighs
            most (word pieces merged, special tokens and markers dropped, weights renormalised over the words).
        context_words (`int`): how many context words (default 5).
        snap_spans (`bool`), sentence_splitter (callable): for text inputs (see `text_to_document`).
        errors (`str`): `"raise"` (default) stops at a bad document with an error naming it and the field; `"skip"`
            gives None as that document's result, warns with the reason, and keeps every other result.
        recognizer: for raw text, the entity recogniser: a spaCy `Language`, a transformers token-classification
            pipeline, a callable `text -> [{start, end, label}]`, `"rules"` or `"spacy:<model>"`. Default: spaCy's
            `en_core_web_sm` (`pip install "hf_docre[text]"`); without it, an error says what to install or pass.
        label_map (`dict`): recogniser label -> entity type, over `ENTITY_LABEL_MAP` (None drops the label).
        mention_grouping: the rules that group flat spans into entities (default `("name", "acronym", "surname")`,
            see `group_entity_spans`).
        return_document (`bool`): return `{"document", "relations"}` per document, the document being the processed
            one (words, sentences, entities with character offsets for text input): what `render()` draws.
        html (`str`): write a self-contained HTML page of this call's documents and relations to this path.
        ranker: DSDocRE: a pre-denoising ranker (`DocREForDenoisingPreTraining` with the relation-detection task, or
            its folder). Each document without `candidate_pairs` is scored by it and only its top
            min(candidates_per_entity x N_entities, candidates_cap) pairs (default 2 and 60) are scored by the
            model; the other pairs are NA.
        max_sentence_distance (`int`): score only the pairs of entities with mentions at most this many sentences
            apart (0: in one sentence); the others are NA. For long texts run with a model trained on single
            documents (converted checkpoints, the quickstart's): it removes most relations between unrelated parts
            of a long text at a measured cost in recall (README, "Long documents"). Default: every pair.
    """

    def __init__(self, model, tokenizer=None, **kwargs):
        tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                "doc-relation-extraction needs the model's tokenizer and the model has none (its folder has no usable "
                "tokenizer files): pass `tokenizer=` (the encoder's fast tokenizer)."
            )
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self.model.eval()  # pipeline() does not do it
        self.featurizer = DocREFeaturizer.from_model(model, tokenizer=self.tokenizer, label2id=None)
        self.collator = DocREDataCollator(self.tokenizer.pad_token_id, model.config.num_relations)

    def _sanitize_parameters(self, **kwargs):
        unknown = sorted(set(kwargs) - set(_OPTIONS) - {"context_tokens"})
        if unknown:
            raise TypeError(
                f"doc-relation-extraction pipeline: unknown option(s) {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(_OPTIONS)} (and batch_size, num_workers)."
            )
        if "context_tokens" in kwargs:  # the name used before context became words
            kwargs.setdefault("context_words", kwargs.pop("context_tokens"))
        threshold = kwargs.get("threshold")
        if threshold is not None and (not _is_number(threshold) or not 0.0 <= float(threshold) <= 1.0):
            raise ValueError(f"threshold is a score between 0 and 1 (a number), got {threshold!r}")
        top_k = kwargs.get("top_k")
        if top_k is not None and (not _is_int(top_k) or top_k < 1):
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        limit = kwargs.get("max_relations_per_pair")
        if limit is not None and not _is_int(limit):
            raise ValueError(f"max_relations_per_pair must be an int (<= 0: no limit), got {limit!r}")
        words = kwargs.get("context_words")
        if words is not None and (not _is_int(words) or words < 0):
            raise ValueError(f"context_words must be an int >= 0, got {words!r}")
        for name in ("return_context", "return_document", "snap_spans"):
            if kwargs.get(name) is not None and not isinstance(kwargs[name], bool):
                raise ValueError(f"{name} must be True or False, got {kwargs[name]!r}")
        if kwargs.get("html") is not None:
            from .processing_docre import check_output_path

            check_output_path(kwargs["html"], "html")
        preprocess, forward, postprocess = {}, {}, {}
        if kwargs.get("errors") not in (None, "raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {kwargs['errors']!r}")
        distance = kwargs.get("max_sentence_distance")
        if distance is not None and (isinstance(distance, bool) or not isinstance(distance, int) or distance < 0):
            raise ValueError(f"max_sentence_distance must be an int >= 0 (sentences), got {distance!r}")
        for name in ("snap_spans", "sentence_splitter", "errors", "recognizer", "label_map", "mention_grouping", "ranker",
                     "candidates_per_entity", "candidates_cap", "max_sentence_distance"):
            if kwargs.get(name) is not None:
                preprocess[name] = kwargs[name]
        for name in ("return_document", "html"):
            if kwargs.get(name) is not None:
                postprocess[name] = kwargs[name]
        if kwargs.get("return_context") is not None:
            preprocess["return_context"] = forward["return_context"] = postprocess["return_context"] = kwargs["return_context"]
        for name in ("max_relations_per_pair", "threshold", "top_k", "context_words"):
            if kwargs.get(name) is not None:
                postprocess[name] = kwargs[name]
        return preprocess, forward, postprocess

    def __call__(self, inputs, **kwargs):
        html = kwargs.pop("html", None) or self._postprocess_params.get("html")
        if html is not None:
            from .processing_docre import check_output_path

            check_output_path(html, "html")  # before any document runs, not after all of them
        for batch_size in (kwargs.get("batch_size"), self._batch_size):
            if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
                raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(inputs, list) and not inputs:
            return []
        keep_documents = kwargs.get("return_document", self._postprocess_params.get("return_document", False))
        if html:
            kwargs["return_document"] = True
        if hasattr(inputs, "column_names") or (html and isinstance(inputs, list)):
            # A Dataset, or a list whose page is written: document by document, so that an interruption still
            # writes the page of the documents done.
            results = []
            try:
                for result in self.get_iterator(inputs, 0, kwargs.pop("batch_size", None) or self._batch_size or 8,
                                                *self._merged_parameters(kwargs), progress=hasattr(inputs, "column_names")):
                    results.append(result)
            except BaseException:
                if html and results:
                    render([r for r in results if r is not None], path=html)
                raise
        else:
            results = super().__call__(inputs, **kwargs)
        if html:
            single = isinstance(results, dict)
            listed = [results] if single else results
            render([r for r in listed if r is not None], path=html)
            if not keep_documents:
                listed = [r["relations"] if r is not None else None for r in listed]
                results = listed[0] if single else listed
        return results

    def _merged_parameters(self, kwargs):
        preprocess, forward, postprocess = self._sanitize_parameters(**kwargs)
        return ({**self._preprocess_params, **preprocess}, {**self._forward_params, **forward},
                {**self._postprocess_params, **postprocess})

    # -- steps ---------------------------------------------------------------------------------------------------

    def _resolved_recognizer(self, recognizer):
        """The recogniser object for a `recognizer` option (the default and named ones are loaded once)."""
        if recognizer is not None and not isinstance(recognizer, str):
            return resolve_recognizer(recognizer)
        cache = self.__dict__.setdefault("_recognizers", {})
        if recognizer not in cache:
            cache[recognizer] = resolve_recognizer(recognizer)
        return cache[recognizer]

    def _resolved_ranker(self, ranker):
        """The ranker for a `ranker` option: a `DocREForDenoisingPreTraining` or its folder (loaded once)."""
        if not isinstance(ranker, str):
            return ranker
        cache = self.__dict__.setdefault("_rankers", {})
        if ranker not in cache:
            from .pretraining_docre import DocREForDenoisingPreTraining

            cache[ranker] = DocREForDenoisingPreTraining.from_pretrained(ranker).to(self.device).eval()
        return cache[ranker]

    def preprocess(self, inputs, snap_spans=False, sentence_splitter=None, return_context=False, errors="raise",
                   recognizer=None, label_map=None, mention_grouping=("name", "acronym", "surname"), ranker=None,
                   candidates_per_entity=2, candidates_cap=60, max_sentence_distance=None):
        try:
            if isinstance(inputs, str):
                inputs = {"text": inputs}
            if not isinstance(inputs, dict):
                _input_error(inputs)
            if "sents" in inputs:
                document = {k: v for k, v in inputs.items() if k != "labels"}
            elif "text" in inputs:
                entities, snap, sentences = inputs.get("entities"), snap_spans, inputs.get("sentences")
                if entities is None:  # raw text: the recogniser finds the entities (an explicit [] means none)
                    text = inputs["text"]
                    if not isinstance(text, str):
                        raise SpanAlignmentError(f"`text` must be a string, got {type(text).__name__}")
                    if sentences is None and sentence_splitter is not None:
                        sentences = sentence_splitter(text)  # split once, for the recogniser and the document
                    entities = recognize_entities(self._resolved_recognizer(recognizer), text, sentences, label_map)
                    snap = True  # a recogniser's spans may cut words (sub-word tokens): widened to the words
                document = text_to_document(
                    inputs["text"], entities, inputs.get("title"), snap,
                    sentences=sentences, words=inputs.get("words"), sentence_splitter=sentence_splitter,
                    mention_grouping=mention_grouping,
                )
            else:
                _input_error(inputs)
            if ranker is not None and document.get("candidate_pairs") is None:  # DSDocRE: the ranker picks the pairs
                self.featurizer.validate(document)
                document = {**document, "candidate_pairs": self._resolved_ranker(ranker).candidate_pairs(
                    [document], per_entity=candidates_per_entity, cap=candidates_cap)[0]}
            if max_sentence_distance is not None:
                self.featurizer.validate(document)
                near = nearby_pairs(document, max_sentence_distance)
                given = document.get("candidate_pairs")
                if given is not None:
                    near_set = {tuple(pair) for pair in near}
                    near = [list(pair) for pair in given if tuple(pair) in near_set]
                document = {**document, "candidate_pairs": near}
            feature = self.featurizer(document, with_labels=False, with_word_map=return_context)
        except (ValueError, KeyError, TypeError) as error:  # DocREInputError and SpanAlignmentError are ValueErrors
            if errors == "raise":
                raise
            title = inputs.get("title") if isinstance(inputs, dict) else None
            reason = f"{type(error).__name__}: {error}" if isinstance(error, (KeyError, TypeError)) else str(error)
            feature, document = None, f"document {title!r}: {reason}" if title and repr(title) not in reason else reason
        # Wrapped so that Pipeline.forward's recursive move-to-device does not walk every document.
        return {"inputs": _Passthrough([feature], [document])}

    def _forward(self, model_inputs, return_context=False):
        inputs = model_inputs["inputs"]
        features = [f for f in inputs.features if f is not None]  # skipped documents (errors="skip") have none
        if not features:
            return {"logits": None, "context_weights": None, "evidence_scores": None, "inputs": inputs}
        batch = self.collator(features)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        output = self.model(**batch, output_context_weights=return_context)
        return {"logits": output.logits, "context_weights": output.context_weights,
                "evidence_scores": getattr(output, "evidence_scores", None), "inputs": inputs}

    def postprocess(self, model_outputs, max_relations_per_pair=None, threshold=None, top_k=None, return_context=False,
                    context_words=5, return_document=False, html=None):
        inputs = model_outputs["inputs"]
        if model_outputs["logits"] is None:
            return [_skipped(reason) for reason in inputs.documents]
        config = self.model.config
        k = config.max_relations_per_pair if max_relations_per_pair is None else max_relations_per_pair
        logits = model_outputs["logits"].float()
        scores = relation_scores(logits, config.decoding)
        if threshold is None:
            predicted = decode_relations(logits, config.decoding, config.global_threshold, k)
        else:
            predicted = select_by_score(scores, threshold, k)
        relation_of = {i: (config.relation_names.get(code, code) if config.relation_names else code, code)
                       for i, code in config.id2label.items()}
        context_weights = model_outputs["context_weights"] if return_context else None
        evidence_scores = model_outputs.get("evidence_scores")
        evidence_threshold = getattr(config, "evidence_threshold", None)
        results = []
        b = -1  # row of the batch: skipped documents have none
        for feature, document in zip(inputs.features, inputs.documents):
            if feature is None:
                results.append(_skipped(document))
                continue
            b += 1
            pairs = feature_pairs(feature)
            found = predicted[b, : len(pairs), 1:].nonzero()
            found_scores = scores[b, found[:, 0], found[:, 1] + 1]  # one gather, not one per relation
            order = torch.argsort(found_scores, descending=True, stable=True)  # best first
            if top_k is not None:
                order = order[:top_k]
            found, found_scores = found[order], found_scores[order].tolist()
            pair_ids = found[:, 0].tolist()
            heads, tails = pairs[pair_ids, 0].tolist(), pairs[pair_ids, 1].tolist()
            entities, sentences_of = {}, {}  # built once per entity that appears in a relation
            words = _document_words(document) if context_weights is not None else None
            relations = []
            for p, h, t, r, score in zip(pair_ids, heads, tails, found[:, 1].tolist(), found_scores):
                for e in (h, t):
                    if e not in entities:
                        entities[e] = _entity(document, e)
                        sentences_of[e] = {m["sent_id"] for m in entities[e]["mentions"]}
                name, code = relation_of[r + 1]
                sentences = sorted(sentences_of[h] | sentences_of[t])
                item = {"head": entities[h], "tail": entities[t], "relation": name, "relation_id": code, "score": score,
                        "sentences": sentences}
                if "offsets" in document:
                    item["sentence_spans"] = [list(document["offsets"]["sentences"][s]) for s in sentences]
                if evidence_scores is not None:  # DREEAM: sentences holding more than the threshold of the context
                    shares = evidence_scores[b, p, : len(document["sents"])]
                    item["evidence"] = (shares > evidence_threshold).nonzero().flatten().tolist()
                    if "offsets" in document:
                        item["evidence_spans"] = [list(document["offsets"]["sentences"][s]) for s in item["evidence"]]
                if context_weights is not None:
                    item["context"] = _context_words(context_weights[b, p], feature["token_word"], words, context_words)
                relations.append(item)
            if relations:
                self._found_any = True
            elif threshold is None and len(pairs) >= 3 and not getattr(self, "_found_any", False):
                self._hint_when_nothing_found(document, pairs, scores[b, : len(pairs), 1:], relation_of)
            results.append({"document": document, "relations": relations} if return_document else relations)
        return results

    def _hint_when_nothing_found(self, document, pairs, scores, relation_of):
        """Warn once per pipeline when a document with several entity pairs gets no relation at the model's own
        threshold and no document before it got one: naming its best candidate, and the likeliest cause."""
        if getattr(self, "_warned_nothing_found", False):
            return
        self._warned_nothing_found = True
        best = int(scores.argmax())
        p, r = divmod(best, scores.shape[-1])
        name, code = relation_of[r + 1]
        head, tail = (_entity(document, int(e))["name"] for e in pairs[p].tolist())
        title = document.get("title") or "(untitled)"
        warnings.warn(
            f"doc-relation-extraction: no relation in document {title!r} ({len(pairs)} entity pairs) at the model's "
            f"threshold; its best candidate is {head!r} -> {name} ({code}) -> {tail!r}, score {float(scores.max()):.3f}. "
            "If the model finds nothing on most documents it is likely undertrained (the README's quickstart trains 3 "
            "epochs; 1 epoch predicts almost nothing): check its eval F1 (eval_results.json, the model card), or pass "
            "threshold= or top_k= to see its best guesses. (Shown once per pipeline.)", stacklevel=2)

    def run_single(self, inputs, preprocess_params, forward_params, postprocess_params):
        return super().run_single(inputs, preprocess_params, forward_params, postprocess_params)[0]

    def run_preprocessed(self, chunk, forward_params, postprocess_params):
        """Results (one per document, in order) of `preprocess` outputs run as one batch."""
        merged = {"inputs": _Passthrough([f for c in chunk for f in c["inputs"].features],
                                         [d for c in chunk for d in c["inputs"].documents])}
        return self.postprocess(self.forward(merged, **forward_params), **postprocess_params)

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params, progress=False):
        """Batches documents with the DocRE collator; yields one result per document, in input order."""
        total = len(inputs) if hasattr(inputs, "__len__") else None
        bar = None
        if progress:
            from transformers.utils.logging import tqdm

            bar = tqdm(total=total, desc="documents", unit="doc")

        def run(chunk):
            for result in self.run_preprocessed(chunk, forward_params, postprocess_params):
                if bar is not None:
                    bar.update(1)
                yield result

        chunk = []
        for document in inputs:
            chunk.append(self.preprocess(document, **preprocess_params))
            if len(chunk) == batch_size:
                yield from run(chunk)
                chunk = []
        if chunk:
            yield from run(chunk)
        if bar is not None:
            bar.close()


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # NaN != NaN


def nearby_pairs(document, max_distance: int) -> list[list[int]]:
    """Ordered (head, tail) entity pairs of a DocRED-format document with mentions at most `max_distance` sentences
    apart (0: in one sentence)."""
    sentences = [sorted({m["sent_id"] for m in mentions}) for mentions in document["vertexSet"]]
    pairs = []
    for h, head in enumerate(sentences):
        for t, tail in enumerate(sentences):
            if h == t:
                continue
            i = j = 0
            closest = None
            while i < len(head) and j < len(tail):  # the closest mentions of two sorted lists
                gap = abs(head[i] - tail[j])
                closest = gap if closest is None else min(closest, gap)
                if head[i] < tail[j]:
                    i += 1
                else:
                    j += 1
            if closest is not None and closest <= max_distance:
                pairs.append([h, t])
    return pairs


class _Passthrough:
    """Features and documents carried from `_forward` to `postprocess` untouched."""

    __slots__ = ("features", "documents")

    def __init__(self, features, documents):
        self.features, self.documents = features, documents


def _entity(document, index):
    """`{"index", "name", "type", "mentions"}`: DocRED input gives each mention's `name`, `sent_id` and `pos`; text
    input also its character span `start`, `end`."""
    mentions = document["vertexSet"][index]
    offsets = document.get("offsets")
    listed = []
    for m, mention in enumerate(mentions):
        item = {"name": mention.get("name", ""), "sent_id": mention["sent_id"], "pos": list(mention["pos"])}
        if offsets is not None:
            item["start"], item["end"] = offsets["mentions"][index][m]
        listed.append(item)
    return {"index": int(index), "name": mentions[0].get("name", ""), "type": mentions[0].get("type", ""), "mentions": listed}


def _document_words(document):
    """[(word, sent_id, pos, char span or None)] for the document's words, numbered across sentences."""
    offsets = document.get("offsets")
    words = []
    for s, sentence in enumerate(document["sents"]):
        for i, word in enumerate(sentence):
            span = offsets["words"][s][i] if offsets is not None else None
            words.append((word, s, i, span))
    return words


def _context_words(token_weights, token_word, words, count):
    """Top `count` document words by localized-context weight: token weights summed per word, special tokens and
    markers dropped, renormalised over the words kept."""
    token_word = torch.as_tensor(token_word, device=token_weights.device)
    length = min(len(token_word), token_weights.shape[-1])
    token_word, weights = token_word[:length], token_weights[:length].float()
    keep = token_word >= 0
    per_word = torch.zeros(len(words), device=weights.device).index_add(0, token_word[keep], weights[keep])
    total = per_word.sum()
    if total <= 0:
        return []
    per_word = per_word / total
    top = per_word.topk(min(count, int((per_word > 0).sum())))
    result = []
    for weight, w in zip(top.values.tolist(), top.indices.tolist()):
        word, s, i, span = words[w]
        item = {"word": word, "sent_id": s, "pos": i, "weight": weight}
        if span is not None:
            item["start"], item["end"] = span
        result.append(item)
    return result


def _skipped(reason):
    warnings.warn(f"doc-relation-extraction skipped a document (errors='skip'); its result is None. {reason}", stacklevel=3)
    return None


def _input_error(inputs):
    keys = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
    raise ValueError(
        f"doc-relation-extraction: cannot read an input with {keys}: pass a string (raw text; entities found by the "
        "recognizer), {'text': ..., 'entities': [...]} or a DocRED-format document (sents, vertexSet)."
    )
