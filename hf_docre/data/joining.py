"""Documents made of other documents: for long-document tests and benchmarks, and as training data that shows a
model unrelated texts in one encoder window (no relation holds between entities of different source documents)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from transformers import TrainerCallback

from ..processing_docre import pair_position


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


def joined_training_documents(documents: Sequence[dict], count: int, max_documents: int = 4, seed: int = 0,
                              with_sources: bool = False) -> list:
    """`count` documents, each joining 2 to `max_documents` distinct documents drawn at random (seeded) from
    `documents`. Every label of the sources is kept; pairs across sources are NA.

    With `with_sources`, each item is `(document, source)` as [`join_documents`] returns it (the same draw)."""
    if len(documents) < 2 or count <= 0:
        return []
    rng = random.Random(seed)
    joined = []
    for _ in range(count):
        size = rng.randint(2, min(max_documents, len(documents)))
        document, source = join_documents(rng.sample(documents, size))
        joined.append((document, source) if with_sources else document)
    return joined


def cross_part_pair_loss_weight(source: Sequence[tuple[int, int]], weight: float) -> list[list[float]]:
    """A joined document's `pair_loss_weight` feature rows: `[pair position, weight]` for every ordered pair whose
    entities come from different source documents (`source` as [`join_documents`] returns it), in the order of
    `all_ordered_pairs`. Empty when `weight` is 1."""
    if weight == 1:
        return []
    part = np.asarray([d for d, _ in source])
    num_entities = len(part)
    heads, tails = np.nonzero(part[:, None] != part[None, :])  # never the diagonal: an entity is in its own part
    positions = pair_position(heads, tails, num_entities)
    return [[int(p), float(weight)] for p in positions]


class JoinedTrainingFeatures:
    """Training features plus `count` joined documents drawn afresh every epoch (a map-style dataset for the Trainer).

    Item `i < len(features)` is `features[i]`; the last `count` items are the features of joined documents that
    `joined_training_documents(documents, count, max_documents, seed + epoch)` draws, so every epoch shows the model
    other unrelated texts side by side, without more data. The draw depends only on the seed and the epoch, so every
    process of a distributed run and a run resumed mid-epoch see the same documents. `set_epoch` is called at each
    epoch's start by [`JoinedTrainingCallback`] (and by accelerate's data loader where it forwards it).

    Args:
        features: the training documents' features (any sequence).
        documents: the training documents (DocRED format) to join.
        featurizer: a `DocREFeaturizer` (or any object with `featurize(documents) -> features`).
        count: joined documents per epoch.
        max_documents: at most this many documents per joined document (at least 2).
        seed: the run's seed.
        cross_pair_weight: weight of the loss of the pairs across a joined document's parts (all NA): above 1
            stresses that unrelated texts side by side hold no relation; 1 (default) weighs them as any pair.
    """

    def __init__(self, features, documents: Sequence[dict], featurizer, count: int, max_documents: int = 4, seed: int = 0,
                 cross_pair_weight: float = 1.0):
        if not cross_pair_weight >= 0:
            raise ValueError(f"cross_pair_weight must be >= 0, got {cross_pair_weight!r}")
        self.cross_pair_weight = float(cross_pair_weight)
        self.features = features
        self.documents = documents
        self.featurizer = featurizer
        self.count = count if len(documents) >= 2 else 0
        self.max_documents = max_documents
        self.seed = seed
        self.epoch = None
        self.joined: list[dict] = []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        epoch = int(epoch)
        if epoch == self.epoch:
            return
        self.epoch = epoch
        drawn = joined_training_documents(self.documents, self.count, self.max_documents, self.seed + epoch, with_sources=True)
        self.joined = self.featurizer.featurize([document for document, _ in drawn])
        if self.cross_pair_weight != 1:
            for feature, (_, source) in zip(self.joined, drawn):
                feature["pair_loss_weight"] = cross_part_pair_loss_weight(source, self.cross_pair_weight)

    def __len__(self) -> int:
        return len(self.features) + self.count

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if index < len(self.features):
            return self.features[index]
        return self.joined[index - len(self.features)]


class JoinedTrainingCallback(TrainerCallback):
    """Draws the joined training documents of each epoch (`JoinedTrainingFeatures.set_epoch`) when it begins."""

    def __init__(self, dataset: JoinedTrainingFeatures):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(state.epoch or 0))
