"""Documents made of other documents: for long-document tests and benchmarks, and as training data that shows a
model unrelated texts in one encoder window (no relation holds between entities of different source documents)."""

from __future__ import annotations

import random
from collections.abc import Sequence


def join_documents(documents: Sequence[dict]) -> tuple[dict, list[tuple[int, int]]]:
    """One DocRED-format document made of `documents` in order: sentences concatenated, entities appended, `sent_id`s,
    label entity ids and evidence shifted; the title is the source titles joined with " + ".

    Returns:
        (document, source): `source[e]` = (index of the source document, entity id there) for every entity.
    """
    sents, vertex_set, labels, source = [], [], [], []
    for d, document in enumerate(documents):
        sentence_offset, entity_offset = len(sents), len(vertex_set)
        sents.extend(document["sents"])
        for e, mentions in enumerate(document["vertexSet"]):
            vertex_set.append([{**m, "sent_id": m["sent_id"] + sentence_offset} for m in mentions])
            source.append((d, e))
        for label in document.get("labels") or []:
            labels.append({**label, "h": label["h"] + entity_offset, "t": label["t"] + entity_offset,
                           "evidence": [s + sentence_offset for s in label.get("evidence") or []]})
    title = " + ".join(document["title"] for document in documents)
    return {"title": title, "sents": sents, "vertexSet": vertex_set, "labels": labels}, source


def joined_training_documents(documents: Sequence[dict], count: int, max_documents: int = 4, seed: int = 0) -> list[dict]:
    """`count` documents, each joining 2 to `max_documents` distinct documents drawn at random (seeded) from
    `documents`. Every label of the sources is kept; pairs across sources are NA."""
    if len(documents) < 2 or count <= 0:
        return []
    rng = random.Random(seed)
    joined = []
    for _ in range(count):
        size = rng.randint(2, min(max_documents, len(documents)))
        joined.append(join_documents(rng.sample(documents, size))[0])
    return joined
