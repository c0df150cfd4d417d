"""`pipeline("doc-relation-extraction")`: relations between the entities of whole documents.

Loaded through ``trust_remote_code`` from a saved model folder (flat sibling; torch/transformers only).

Inputs: a DocRED-format document (`sents`, `vertexSet`, ...); or `{"text": str, "entities": [{"mentions":
[[char_start, char_end], ...], "type": str, "name": str (optional)}, ...]}`; a list of either; or a `datasets.Dataset`
of DocRED-format rows (batched, with a progress bar).

Output per document: a list of `{"head": {"index", "name", "type"}, "tail": {...}, "relation": name,
"relation_id": code, "score": probability}`, highest score first; with `return_context=True` each item also has
`"context"`: the tokens the pair's localized context pooling weighs most, as `[{"token", "weight"}, ...]`.

The score is the probability that the relation beats the threshold: sigmoid(logit_r - logit_TH) for the
adaptive-thresholding loss, sigmoid(logit_r) for the BCE head (decoded against `global_threshold`).
"""

import re

import torch
from transformers import Pipeline

from .losses_docre import decode_relations, relation_scores
from .processing_docre import DocREDataCollator, DocREFeaturizer, feature_pairs

_WORD = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = {".", "!", "?"}


class SpanAlignmentError(ValueError):
    """A character span of the text input that does not start and end on word boundaries."""


def text_to_document(text, entities, title=None, snap_spans=False):
    """`{"text", "entities"}` input -> a DocRED-format document.

    The text is cut into words (runs of word characters, or single punctuation marks) and into sentences after
    `.`, `!` and `?`. Each mention `[char_start, char_end)` must start at a word's first character and end at a
    word's last; otherwise [`SpanAlignmentError`] names the entity, the mention and the nearest word-aligned span,
    unless `snap_spans=True`, which widens the span to the words it touches (documented, never silent).
    """
    words, sentence_of, position = [], [], []
    sentence, index_in_sentence = 0, 0
    for match in _WORD.finditer(text):
        words.append((match.start(), match.end(), match.group()))
        sentence_of.append(sentence)
        position.append(index_in_sentence)
        index_in_sentence += 1
        if match.group() in _SENTENCE_END:
            sentence, index_in_sentence = sentence + 1, 0
    sents = [[] for _ in range(max(sentence_of, default=-1) + 1)]
    for (_, _, word), s in zip(words, sentence_of):
        sents[s].append(word)
    sents = [s for s in sents if s]

    vertex_set = []
    for e, entity in enumerate(entities):
        mentions = []
        for m, span in enumerate(entity.get("mentions") or []):
            start, end = int(span[0]), int(span[1])
            touched = [i for i, (ws, we, _) in enumerate(words) if ws < end and we > start]
            where = f"entities[{e}].mentions[{m}] = [{start}, {end}) ({text[start:end]!r})"
            if not touched:
                raise SpanAlignmentError(f"{where} covers no word of the text")
            first, last = touched[0], touched[-1]
            if (words[first][0], words[last][1]) != (start, end) and not snap_spans:
                snapped = (words[first][0], words[last][1])
                raise SpanAlignmentError(
                    f"{where} does not align to word boundaries; the words it touches span {list(snapped)} "
                    f"({text[snapped[0]:snapped[1]]!r}). Fix the span, or pass snap_spans=True to use the words."
                )
            if sentence_of[first] != sentence_of[last]:
                raise SpanAlignmentError(f"{where} crosses a sentence boundary")
            mentions.append({
                "name": text[words[first][0] : words[last][1]],
                "pos": [position[first], position[last] + 1],
                "sent_id": sentence_of[first],
                "type": entity.get("type", ""),
            })
        if not mentions:
            raise SpanAlignmentError(f"entities[{e}] has no mentions")
        vertex_set.append(mentions)
    return {"title": title or "", "sents": sents, "vertexSet": vertex_set}


class DocumentRelationExtractionPipeline(Pipeline):
    """Document-level relation extraction with a DocRE model (see the module docstring for inputs and outputs).

    Options (at construction or per call): `max_relations_per_pair`, `threshold` (BCE heads), `return_context`,
    `context_tokens` (how many context tokens to return), `snap_spans` (for text inputs).
    """

    def __init__(self, model, tokenizer=None, **kwargs):
        tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self.model.eval()  # pipeline() does not do it
        self.featurizer = DocREFeaturizer(
            self.tokenizer, label2id=None, entity_marker=model.config.entity_marker,
            mention_spans=getattr(model.config, "mention_representation", "start") == "span",
        )
        self.collator = DocREDataCollator(self.tokenizer.pad_token_id, model.config.num_relations)

    def _sanitize_parameters(self, max_relations_per_pair=None, threshold=None, return_context=None,
                             context_tokens=None, snap_spans=None, **kwargs):
        preprocess, forward, postprocess = {}, {}, {}
        if snap_spans is not None:
            preprocess["snap_spans"] = snap_spans
        if return_context is not None:
            forward["return_context"] = return_context
            postprocess["return_context"] = return_context
        if max_relations_per_pair is not None:
            postprocess["max_relations_per_pair"] = max_relations_per_pair
        if threshold is not None:
            postprocess["threshold"] = threshold
        if context_tokens is not None:
            postprocess["context_tokens"] = context_tokens
        return preprocess, forward, postprocess

    def __call__(self, inputs, **kwargs):
        if hasattr(inputs, "column_names"):  # a datasets.Dataset of DocRED-format rows
            return list(self.get_iterator(inputs, 0, kwargs.pop("batch_size", None) or self._batch_size or 8,
                                          *self._merged_parameters(kwargs), progress=True))
        return super().__call__(inputs, **kwargs)

    def _merged_parameters(self, kwargs):
        preprocess, forward, postprocess = self._sanitize_parameters(**kwargs)
        return ({**self._preprocess_params, **preprocess}, {**self._forward_params, **forward},
                {**self._postprocess_params, **postprocess})

    # -- steps ---------------------------------------------------------------------------------------------------

    def preprocess(self, inputs, snap_spans=False):
        if "text" in inputs and "sents" not in inputs:
            document = text_to_document(inputs["text"], inputs.get("entities") or [], inputs.get("title"), snap_spans)
        else:
            document = {k: v for k, v in inputs.items() if k != "labels"}
        feature = self.featurizer(document, with_labels=False)
        # Wrapped so that Pipeline.forward's recursive move-to-device does not walk every document.
        return {"inputs": _Passthrough([feature], [document])}

    def _forward(self, model_inputs, return_context=False):
        inputs = model_inputs["inputs"]
        batch = self.collator(inputs.features)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        output = self.model(**batch, output_context_weights=return_context)
        return {
            "logits": output.logits,
            "context_weights": output.context_weights,
            "input_ids": batch["input_ids"],
            "inputs": inputs,
        }

    def postprocess(self, model_outputs, max_relations_per_pair=None, threshold=None, return_context=False, context_tokens=5):
        config = self.model.config
        k = config.max_relations_per_pair if max_relations_per_pair is None else max_relations_per_pair
        threshold = config.global_threshold if threshold is None else threshold
        logits = model_outputs["logits"].float()
        predicted = decode_relations(logits, config.decoding, threshold, k)
        scores = relation_scores(logits, config.decoding)
        relation_of = {i: (config.relation_names.get(code, code) if config.relation_names else code, code)
                       for i, code in config.id2label.items()}
        inputs = model_outputs["inputs"]
        results = []
        for b, (feature, document) in enumerate(zip(inputs.features, inputs.documents)):
            pairs = feature_pairs(feature)
            found = predicted[b, : len(pairs), 1:].nonzero()
            found_scores = scores[b, found[:, 0], found[:, 1] + 1]  # one gather, not one per relation
            order = torch.argsort(found_scores, descending=True, stable=True)  # best first
            found, found_scores = found[order], found_scores[order].tolist()
            pair_ids = found[:, 0].tolist()
            heads, tails = pairs[pair_ids, 0].tolist(), pairs[pair_ids, 1].tolist()
            entities = [_entity(document, e) for e in range(len(document["vertexSet"]))]
            relations = []
            for p, h, t, r, score in zip(pair_ids, heads, tails, found[:, 1].tolist(), found_scores):
                name, code = relation_of[r + 1]
                item = {"head": dict(entities[h]), "tail": dict(entities[t]), "relation": name, "relation_id": code, "score": score}
                if return_context and model_outputs["context_weights"] is not None:
                    weights = model_outputs["context_weights"][b, p]
                    top = weights.topk(min(context_tokens, int((weights > 0).sum()))) if (weights > 0).any() else None
                    ids = model_outputs["input_ids"][b]
                    item["context"] = [] if top is None else [
                        {"token": self.tokenizer.convert_ids_to_tokens(int(ids[i])), "weight": float(w)}
                        for w, i in zip(top.values.tolist(), top.indices.tolist())
                    ]
                relations.append(item)
            results.append(relations)
        return results

    def run_single(self, inputs, preprocess_params, forward_params, postprocess_params):
        return super().run_single(inputs, preprocess_params, forward_params, postprocess_params)[0]

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params, progress=False):
        """Batches documents with the DocRE collator; yields one result per document, in input order."""
        total = len(inputs) if hasattr(inputs, "__len__") else None
        bar = None
        if progress:
            from transformers.utils.logging import tqdm

            bar = tqdm(total=total, desc="documents", unit="doc")

        def run(chunk):
            merged = {"inputs": _Passthrough([f for c in chunk for f in c["inputs"].features],
                                             [d for c in chunk for d in c["inputs"].documents])}
            outputs = self.forward(merged, **forward_params)
            for result in self.postprocess(outputs, **postprocess_params):
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


class _Passthrough:
    """Features and documents carried from `_forward` to `postprocess` untouched."""

    __slots__ = ("features", "documents")

    def __init__(self, features, documents):
        self.features, self.documents = features, documents


def _entity(document, index):
    mentions = document["vertexSet"][index]
    return {"index": int(index), "name": mentions[0].get("name", ""), "type": mentions[0].get("type", "")}
