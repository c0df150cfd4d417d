"""DREEAM's inference-stage fusion (Ma et al. 2023, Sec. 3.4; the released code's `--eval_mode fushion`).

A model that retrieves evidence (`config.evidence_threshold`) reads each document twice: the document itself, and
pseudo documents made of the evidence sentences it found for each pair (plus a sentence of the head and of the tail
when the evidence has none). A relation found in both readings is kept; the others are ranked by the sum of their
scores (a relation found in one reading only is penalised by 10) and kept above a threshold, tuned for F1 on
development documents (`tune=True` with labelled documents) or given.

    predictions, threshold = evidence_fusion(model, dev_documents, tune=True)      # tune on dev
    predictions, _ = evidence_fusion(model, test_documents, threshold=threshold)   # then apply
    score_docred(predictions, test_documents)

Scores are the released code's: for each pair, its top-k relations (k = `max_relations_per_pair`) scored relative
to the threshold class (logit_r - logit_TH; when TH is not among the top k, relative to the k-th logit minus 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .processing_docre import DocREDataCollator, DocREFeaturizer, all_ordered_pairs

MISSING_READING_PENALTY = 10.0


def _top_relations(logits: torch.Tensor, k: int) -> list[dict]:
    """[P, R] logits -> per pair {relation column: relative score} of its top-k columns (NA left out)."""
    values, columns = torch.topk(logits, k, dim=-1)
    found = []
    for row_values, row_columns in zip(values.tolist(), columns.tolist()):
        reference = row_values[row_columns.index(0)] if 0 in row_columns else row_values[-1] - 1
        found.append({c: v - reference for v, c in zip(row_values, row_columns) if c != 0})
    return found


def _read(model, documents, batch_size):
    """Per document: (per pair {column: score}, per pair evidence sentence ids)."""
    featurizer = DocREFeaturizer.from_model(model)
    collator = DocREDataCollator.from_model(model)
    threshold = model.config.evidence_threshold
    k = model.config.max_relations_per_pair if model.config.max_relations_per_pair > 0 else model.config.num_relations
    k = min(k, model.config.num_relations)
    device = next(model.parameters()).device
    results = []
    for start in range(0, len(documents), batch_size):
        chunk = documents[start : start + batch_size]
        features = featurizer.featurize(chunk, with_labels=False)
        batch = {key: value.to(device) for key, value in collator(features).items()}
        with torch.inference_mode():
            output = model(**batch)
        for b, document in enumerate(chunk):
            pairs = len(document["vertexSet"]) * (len(document["vertexSet"]) - 1)
            scores = _top_relations(output.logits[b, :pairs].float().cpu(), k)
            shares = output.evidence_scores[b, :pairs, : len(document["sents"])].float().cpu()
            evidence = [row.nonzero().flatten().tolist() for row in shares > threshold]
            results.append((scores, evidence))
    return results


def pseudo_document(document: dict, sentences: Sequence[int]) -> tuple[dict, list[int]]:
    """The document made of `sentences` (sorted ids) and the entities with a mention there. Returns (document,
    `entity_map`: new entity index -> the document's)."""
    position = {s: i for i, s in enumerate(sentences)}
    entities, entity_map = [], []
    for e, mentions in enumerate(document["vertexSet"]):
        kept = [{**m, "sent_id": position[m["sent_id"]]} for m in mentions if m["sent_id"] in position]
        if kept:
            entities.append(kept)
            entity_map.append(e)
    return {"title": document.get("title"), "sents": [document["sents"][s] for s in sentences], "vertexSet": entities}, entity_map


def evidence_fusion(model, documents: Sequence[dict], threshold: float | None = None, tune: bool = False,
                    batch_size: int = 8) -> tuple[list[list[dict]], float]:
    """DREEAM's inference-stage fusion over `documents` (DocRED format).

    Args:
        model: a DocRE model with `config.evidence_threshold` set (DREEAM).
        threshold: keep fused candidates scoring above it (the released code's `thresh` file).
        tune: choose the threshold that maximises F1 against the documents' labels (development data).
    Returns:
        (per document, the `{"h_idx", "t_idx", "r"}` relations; the threshold used).
    """
    if getattr(model.config, "evidence_threshold", None) is None:
        raise ValueError("evidence_fusion needs a model that retrieves evidence (config.evidence_threshold, e.g. method='dreeam')")
    if tune == (threshold is not None):
        raise ValueError("evidence_fusion: pass a threshold, or tune=True with labelled documents (not both)")
    id2label = model.config.id2label
    originals = _read(model, list(documents), batch_size)

    # Pseudo documents: one per distinct evidence group of each document.
    pseudo, owners = [], []
    for d, (document, (_, evidence)) in enumerate(zip(documents, originals)):
        pairs = all_ordered_pairs(len(document["vertexSet"])).tolist()
        groups = set()
        for (head, tail), sentences in zip(pairs, evidence):
            if not sentences:
                continue
            group = set(sentences)
            for entity in (head, tail):
                entity_sentences = sorted(m["sent_id"] for m in document["vertexSet"][entity])
                if not group & set(entity_sentences):
                    group.add(entity_sentences[0])
            groups.add(tuple(sorted(group)))
        for group in sorted(groups):
            made, entity_map = pseudo_document(document, group)
            if len(made["vertexSet"]) >= 2:
                pseudo.append(made)
                owners.append((d, entity_map))
    second = [{} for _ in documents]  # (h, t, column) -> best pseudo-document score
    if pseudo:
        for (d, entity_map), made, (scores, _) in zip(owners, pseudo, _read(model, pseudo, batch_size)):
            pairs = all_ordered_pairs(len(made["vertexSet"])).tolist()
            for (head, tail), relations in zip(pairs, scores):
                for column, score in relations.items():
                    key = (entity_map[head], entity_map[tail], column)
                    second[d][key] = max(score, second[d].get(key, float("-inf")))

    kept, candidates = [[] for _ in documents], []  # candidates: (score, document, key)
    for d, (document, (scores, _)) in enumerate(zip(documents, originals)):
        first = {}
        for (head, tail), relations in zip(all_ordered_pairs(len(document["vertexSet"])).tolist(), scores):
            for column, score in relations.items():
                first[(head, tail, column)] = score
        for key in first.keys() | second[d].keys():
            if key in first and key in second[d]:
                if first[key] > 0 and second[d][key] > 0:
                    kept[d].append(key)
                    continue
                score = first[key] + second[d][key]
            else:
                score = first.get(key, second[d].get(key)) - MISSING_READING_PENALTY
            candidates.append((score, d, key))
    candidates.sort(key=lambda item: -item[0])
    if tune:
        threshold = _best_threshold(candidates, kept, documents, id2label)
    for score, d, key in candidates:
        if score > threshold:
            kept[d].append(key)
    predictions = [[{"h_idx": h, "t_idx": t, "r": id2label[c]} for h, t, c in sorted(keys)] for keys in kept]
    return predictions, float(threshold)


def _best_threshold(candidates, kept, documents, id2label):
    """The candidate score maximising F1 when every candidate at or above it is kept (as the released code)."""
    gold = [{(l["h"], l["t"], l["r"]) for l in document.get("labels") or []} for document in documents]
    if not any(gold):
        raise ValueError("evidence_fusion(tune=True) needs labelled documents")
    num_gold = sum(len(g) for g in gold)
    correct = sum((h, t, id2label[c]) in gold[d] for d, keys in enumerate(kept) for h, t, c in keys)
    predicted = sum(len(keys) for keys in kept)
    best, threshold = -1.0, float("inf")
    for score, d, (h, t, c) in candidates:
        correct += (h, t, id2label[c]) in gold[d]
        predicted += 1
        precision, recall = correct / predicted, correct / num_gold
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if f1 > best:
            # Keep this candidate and those above it: the threshold sits just below its score.
            best, threshold = f1, score - 1e-6
    return threshold
