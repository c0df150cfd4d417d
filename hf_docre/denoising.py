"""DSDocRE's data side (Xiao et al. 2020): the pre-denoising ranker's scores, trusted distant labels, candidate
pairs, the relational-fact index, document-pair sampling and the pre-training collator.

Stages (each a stock-Trainer run or a batched, resumable pass):

1. ranker: `DocREForDenoisingPreTraining` with `pretraining_tasks=["relation_detection"]`, trained on annotated
   documents with [`RankerCollator`] (groups of one related pair and NA pairs);
2. scoring: `write_pair_scores(ranker, features, folder)` keeps each document's top pairs and scores in parquet
   shards (resumable, never all in memory); `trusted_pairs` marks the distant labels among the top k_d pairs
   (paper 20, code 30); `select_candidate_pairs` / `with_candidate_pairs` give the fine-tuning and evaluation
   candidates (top min(2 N_entities, 60)); dropped pairs are predicted NA and still count as misses in the metric;
3. pre-training: [`DocumentPairDataset`] draws document pairs (sharing a trusted fact with probability 0.6, from
   `build_fact_index`) and [`DenoisingPreTrainingCollator`] builds every task's inputs ([BLANK] replacement,
   masked mentions, candidates);
4. fine-tuning: `method="dsdocre"` on the candidate pairs, from the pre-trained encoder.

Not loaded through remote code (training-time helpers, like `distillation.py`).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence

import numpy as np
import torch

from .pretraining_docre import candidate_pair_count
from .processing_docre import DocREDataCollator, DocREFeaturizer, all_ordered_pairs
from .text_docre import normalize_entity_name

SCORES_MANIFEST = "pair_scores.json"


# -- ranker scores, trusted labels, candidate pairs -----------------------------------------------------------------


def write_pair_scores(ranker, features: Sequence[dict], output_dir: str, keep: int = 60, batch_size: int = 8,
                      shard_size: int = 512, overwrite: bool = False, progress: bool = False) -> str:
    """Score every ordered pair of every document with the ranker and store each document's `keep` best pairs
    (sorted, best first) and their scores as JSON-lines shards. Returns the folder; read it back with
    `load_pair_scores`.

    A corpus job (`corpus.run_shard_folder`): under torchrun / accelerate launch each rank scores its contiguous
    shards; a stopped run resumes (shards written are kept, a shard in progress keeps its finished documents), and
    the folder's manifest records the ranker's and the documents' fingerprints, so a folder of another ranker or
    other documents is refused unless `overwrite=True`. Documents are batched by length within a shard."""
    from .corpus import run_shard_folder
    from .distillation import features_fingerprint, teacher_fingerprint

    num_shards = max(1, -(-len(features) // shard_size))
    manifest = {"num_documents": len(features), "num_shards": num_shards, "keep": keep, "shard_size": shard_size,
                "ranker_fingerprint": teacher_fingerprint(ranker), "features_fingerprint": features_fingerprint(features)}
    collator = DocREDataCollator.from_model(ranker)
    device = next(ranker.parameters()).device

    def shard_path(shard):
        return os.path.join(output_dir, f"scores-{shard:05d}.jsonl")

    def compute(indices):
        chunk = [{k: v for k, v in features[i].items() if k != "labels"} for i in indices]
        batch = collator(chunk)
        with torch.inference_mode():
            scores = ranker.score_pairs(**{k: batch[k].to(device) for k in
                                           ("input_ids", "attention_mask", "mention_index", "pair_index")}).float().cpu()
        rows = []
        for offset, (index, feature) in enumerate(zip(indices, chunk)):
            pairs = batch["pair_index"][offset]
            real = int((pairs[:, 0] >= 0).sum())
            order = torch.argsort(scores[offset, :real], descending=True, stable=True)[:keep]
            rows.append({"index": index, "title": feature.get("title"), "pairs": pairs[order].tolist(),
                         "scores": scores[offset, order].tolist()})
        return rows

    def write_shard(shard, rows):
        temporary = shard_path(shard) + ".partial"
        with open(temporary, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        os.replace(temporary, shard_path(shard))

    def clear():
        for name in os.listdir(output_dir):
            if name.startswith("scores-") and name.endswith(".jsonl"):
                os.remove(os.path.join(output_dir, name))

    was_training = ranker.training
    ranker.eval()
    try:
        run_shard_folder(str(output_dir), SCORES_MANIFEST, manifest, len(features), shard_size, shard_path, compute, write_shard,
                         length=lambda i: len(features[i]["input_ids"]), batch_size=batch_size, overwrite=overwrite,
                         clear=clear, progress=progress, desc="pair scores",
                         mismatch=lambda differences: f"{output_dir} holds scores of other documents or settings (they differ in "
                                                      f"{', '.join(differences)}); use another folder, or overwrite=True")
    finally:
        ranker.train(was_training)
    return output_dir


def load_pair_scores(output_dir: str) -> list[dict]:
    """The rows `write_pair_scores` wrote, in document order: {index, title, pairs (best first), scores}."""
    with open(os.path.join(output_dir, SCORES_MANIFEST)) as f:
        manifest = json.load(f)
    rows = []
    for shard in range(manifest["num_shards"]):
        path = os.path.join(output_dir, f"scores-{shard:05d}.jsonl")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing: run write_pair_scores again to finish the scoring")
        with open(path) as f:
            rows.extend(json.loads(line) for line in f)
    return rows


def candidate_pair_counts(num_entities: Sequence[int], per_entity: int = 2, cap: int | None = 60) -> np.ndarray:
    """How many pairs each document keeps for fine-tuning and evaluation (`candidate_pair_count` per document):
    per_entity x N_entities (paper), capped at `cap` (released code: 60), and at most every ordered pair."""
    return np.array([candidate_pair_count(int(n), per_entity, cap) for n in num_entities], dtype=np.int64)


def select_candidate_pairs(score_rows: Sequence[dict], num_entities: Sequence[int], per_entity: int = 2,
                           cap: int | None = 60) -> list[list[list[int]]]:
    """Each document's top min(per_entity x N_entities, cap) pairs by ranker score (rows from `load_pair_scores`,
    best first), as `candidate_pairs` lists."""
    counts = candidate_pair_counts(num_entities, per_entity, cap)
    return [row["pairs"][: int(count)] for row, count in zip(score_rows, counts)]


def trusted_pairs(score_rows: Sequence[dict], k: int = 20) -> list[set]:
    """The ranker's top-k pairs of each document (paper k_d = 20; released code 30): the distant labels on them are
    trusted as positives in pre-training."""
    return [{tuple(pair) for pair in row["pairs"][:k]} for row in score_rows]


def with_candidate_pairs(documents: Sequence[dict], candidates: Sequence[Sequence], drop_labels_outside: bool = True) -> list[dict]:
    """Copies of the documents that score only their candidate pairs. Labels on other pairs are dropped from the
    copies (the model cannot predict them); score against the untouched documents so they count as misses."""
    out = []
    for document, pairs in zip(documents, candidates):
        keep = {tuple(pair) for pair in pairs}
        labels = document.get("labels")
        if drop_labels_outside and labels is not None:
            labels = [label for label in labels if (label["h"], label["t"]) in keep]
        out.append({**document, "candidate_pairs": [list(pair) for pair in pairs], "labels": labels})
    return out


# -- the relational-fact index and document pairs ----------------------------------------------------------------------


def _entity_name(mentions):
    return normalize_entity_name(mentions[0]["name"])


def build_fact_index(documents: Sequence[dict], trusted: Sequence[set], with_relation: bool = False) -> dict:
    """{(head name, tail name): [(document, head, tail), ...]} of trusted distant labels, for keys found in at least 2
    documents. Entities are identified across documents by their normalised first-mention name: the released code
    keys its index by the entity pair (most likely the KB pair; its index file is not available). With
    `with_relation=True` the key also holds the relation (stricter: far fewer shared facts)."""
    index = {}
    for d, (document, good) in enumerate(zip(documents, trusted)):
        entities = document["vertexSet"]
        for label in document.get("labels") or []:
            if (label["h"], label["t"]) in good:
                key = (_entity_name(entities[label["h"]]), _entity_name(entities[label["t"]]))
                if with_relation:
                    key += (label["r"],)
                index.setdefault(key, []).append((d, label["h"], label["t"]))
    return {key: sorted(set(items)) for key, items in index.items() if len({d for d, _, _ in items}) >= 2}


class DocumentPairDataset(torch.utils.data.Dataset):
    """Map-style dataset of pre-training examples, each a pair of document indices. Example i is drawn from a
    generator seeded by (seed, i), so runs are reproducible and the Trainer's samplers (and DDP) work unchanged.

    With probability `same_fact_probability` (0.6) a fact key is drawn uniformly and two of its instances in
    different documents give the pair and the alignment query; otherwise two random documents with at least
    `min_entities` entities and one trusted label (no alignment).
    """

    def __init__(self, documents: Sequence[dict], trusted: Sequence[set], fact_index: dict, num_samples: int,
                 same_fact_probability: float = 0.6, min_entities: int = 5, seed: int = 0):
        self.keys = sorted(fact_index)
        self.fact_index = fact_index
        self.num_samples = num_samples
        self.same_fact_probability = same_fact_probability
        self.seed = seed
        self.eligible = [d for d, (document, good) in enumerate(zip(documents, trusted))
                         if len(document["vertexSet"]) >= min_entities and any(
                             (label["h"], label["t"]) in good for label in document.get("labels") or [])]
        if len(self.eligible) < 2:
            raise ValueError("DocumentPairDataset: fewer than 2 documents with enough entities and a trusted label")

    def __len__(self):
        return self.num_samples

    def __getitem__(self, i):
        rng = random.Random(self.seed * 1_000_003 + i)
        if self.keys and rng.random() < self.same_fact_probability:
            instances = self.fact_index[self.keys[rng.randrange(len(self.keys))]]
            first = rng.choice(instances)
            second = rng.choice([item for item in instances if item[0] != first[0]])
            return {"documents": [first[0], second[0]], "alignment": [list(first[1:]), list(second[1:])],
                    "seed": self.seed * 1_000_003 + i}
        first, second = rng.sample(self.eligible, 2)
        return {"documents": [first, second], "alignment": None, "seed": self.seed * 1_000_003 + i}


# -- collators ------------------------------------------------------------------------------------------------------


def _pair_grid(document, num_entities):
    """[E, E] bool: pairs with any distant label."""
    grid = np.zeros((num_entities, num_entities), dtype=bool)
    for label in document.get("labels") or []:
        grid[label["h"], label["t"]] = True
    return grid


def _negatives(labelled, rng, count):
    """`count` (head, tail) pairs without any label (with replacement when there are fewer)."""
    heads, tails = np.nonzero(~labelled & ~np.eye(len(labelled), dtype=bool))
    if len(heads) == 0:
        return None
    picks = rng.choice(len(heads), size=count, replace=len(heads) < count)
    return np.stack([heads[picks], tails[picks]], -1)


def _detection_groups(positives, labelled, rng, groups, size):
    """`groups` groups of `size` pairs, one drawn from `positives` at a random slot and the others without any label:
    ([groups, size, 2] pairs, [groups] gold slots, -100 where the document has no positive or no unlabelled pair)."""
    pairs = np.zeros((groups, size, 2), dtype=np.int64)
    labels = np.full(groups, -100, dtype=np.int64)
    for g in range(groups):
        negatives = _negatives(labelled, rng, size)
        if not positives or negatives is None:
            continue
        slot = int(rng.integers(size))
        negatives[slot] = positives[int(rng.integers(len(positives)))]
        pairs[g], labels[g] = negatives, slot
    return pairs, labels


class RankerCollator:
    """Batches for training the pre-denoising ranker (Sec. 3.3; released code): per annotated document, `groups`
    groups of one related pair (drawn from the gold labels, so a pair with several relations is drawn more often)
    and `negatives` pairs with no relation; `detection_labels` is the related pair's slot. Seeded per batch."""

    def __init__(self, featurizer: DocREFeaturizer, groups: int = 3, negatives: int = 5, seed: int = 0):
        self.featurizer, self.groups, self.negatives, self.seed = featurizer, groups, negatives, seed
        self.pad_token_id = featurizer.tokenizer.pad_token_id or 0
        self.calls = 0

    def __call__(self, documents):
        rng = np.random.default_rng([self.seed, self.calls])
        self.calls += 1
        features = [self.featurizer(document, with_labels=False) for document in documents]
        batch = DocREDataCollator(self.pad_token_id, 1)([{k: v for k, v in f.items() if k != "pair_index"} for f in features])
        size = self.negatives + 1
        pairs = np.zeros((len(documents), self.groups, size, 2), dtype=np.int64)
        labels = np.full((len(documents), self.groups), -100, dtype=np.int64)
        for d, document in enumerate(documents):
            gold = [(label["h"], label["t"]) for label in document.get("labels") or []]
            labelled = _pair_grid(document, len(document["vertexSet"]))
            pairs[d], labels[d] = _detection_groups(gold, labelled, rng, self.groups, size)
        batch.pop("pair_index", None)
        batch["detection_pairs"] = torch.from_numpy(pairs)
        batch["detection_labels"] = torch.from_numpy(labels)
        batch["document_side"] = torch.zeros(len(documents), dtype=torch.long)  # one mean over all documents
        return batch


class DenoisingPreTrainingCollator:
    """Pre-training batches from [`DocumentPairDataset`] examples: the 2B documents (row b and row b + B are an
    example's two documents) and every task's inputs (see `pretraining_docre`). Sampling follows the released code:

    - [BLANK]: each entity, independently with probability `blank_probability` (the code's effective alpha 0.2), has
      every mention's words replaced by one blank token, its markers kept: `[Ei] [BLANK] [/Ei]`;
    - mention-entity matching: up to `masked_mentions` (3) entities with 2+ mentions lose one random mention each,
      replaced by the mask token with no markers, and removed from the entity; `mention_candidates` (5) distinct
      entities with the gold once;
    - cross matching: an entity of each document whose name is also an entity of the partner (exact normalised
      name), against `cross_candidates` (8) partner entities, gold once, both directions;
    - relation detection: `groups` (3) groups of one trusted positive and NA pairs (`detection_candidates` = 8);
      cross: 4 NA pairs from each document, one replaced by a positive of a random side;
    - alignment: the gold pair of the partner, up to 5 trusted pairs of the partner with another relation, NA pairs
      (14 candidates), both directions; -100 without a shared fact.

    Mentions that overlap another mention are never blanked or masked (their words are shared). Documents are not
    modified; each example is drawn from its own seed, so batches are deterministic.
    """

    def __init__(self, featurizer: DocREFeaturizer, documents: Sequence[dict], trusted: Sequence[set], config,
                 blank_probability: float = 0.2, masked_mentions: int = 3, mention_candidates: int = 5,
                 cross_candidates: int = 8, groups: int = 3, detection_candidates: int = 8,
                 alignment_hard_positives: int = 5, alignment_negatives: int = 8):
        self.featurizer, self.documents, self.trusted, self.config = featurizer, documents, trusted, config
        self.blank_probability = blank_probability
        self.masked_mentions, self.mention_candidates, self.cross_candidates = masked_mentions, mention_candidates, cross_candidates
        self.groups, self.detection_candidates = groups, detection_candidates
        self.alignment_hard_positives, self.alignment_negatives = alignment_hard_positives, alignment_negatives
        tokenizer = featurizer.tokenizer
        self.mask_id = tokenizer.convert_tokens_to_ids(config.mention_mask_token)
        self.pad_token_id = tokenizer.pad_token_id or 0

    # -- one document -----------------------------------------------------------------------------------------

    def corrupt(self, document: dict, rng: np.random.Generator) -> tuple[dict, list[tuple[int, dict]], list[int]]:
        """(a corrupted copy, [(entity, masked mention)] in text order, blanked entities)."""
        entities = document["vertexSet"]
        # Mentions that share a word with another mention (a duplicate included) are never edited.
        by_sentence = {}
        for e, mentions in enumerate(entities):
            for i, m in enumerate(mentions):
                by_sentence.setdefault(m["sent_id"], []).append(((e, i), m["pos"][0], m["pos"][1]))
        overlapping = set()
        for sentence_spans in by_sentence.values():
            for a, a_start, a_end in sentence_spans:
                for b, b_start, b_end in sentence_spans:
                    if a != b and a_start < b_end and b_start < a_end:
                        overlapping.add((entities[a[0]][a[1]]["sent_id"], a_start, a_end))
        clean = lambda e, m: (m["sent_id"], m["pos"][0], m["pos"][1]) not in overlapping  # noqa: E731
        multi = [e for e, mentions in enumerate(entities) if len(mentions) >= 2 and any(clean(e, m) for m in mentions)]
        chosen = rng.permutation(multi)[: self.masked_mentions].tolist()
        masked = []
        for e in chosen:
            options = [i for i, m in enumerate(entities[e]) if clean(e, m)]
            masked.append((e, int(options[int(rng.integers(len(options)))])))
        masked_set = set(masked)
        blanked = [e for e in range(len(entities)) if rng.random() < self.blank_probability
                   and all(clean(e, m) for m in entities[e])]
        # Word edits per sentence: (start, end) -> replacement word.
        edits = {}
        for e in blanked:
            for i, m in enumerate(entities[e]):
                if (e, i) not in masked_set:
                    edits.setdefault(m["sent_id"], {})[(m["pos"][0], m["pos"][1])] = self.config.blank_token
        for e, i in masked:
            m = entities[e][i]
            edits.setdefault(m["sent_id"], {})[(m["pos"][0], m["pos"][1])] = self.config.mention_mask_token
        sents, shift = [], {}
        for s, sentence in enumerate(document["sents"]):
            sentence_edits = sorted(edits.get(s, {}).items())
            words, previous, new_position = [], 0, {}
            for (start, end), word in sentence_edits:
                words.extend(sentence[previous:start])
                new_position[(start, end)] = (len(words), len(words) + 1)
                words.append(word)
                previous = end
            words.extend(sentence[previous:])
            sents.append(words)
            old = np.arange(len(sentence) + 1)  # old word boundary -> new boundary
            delta = np.zeros(len(sentence) + 1, dtype=np.int64)
            for (start, end), _ in sentence_edits:
                delta[end:] -= end - start - 1
            shift[s] = (old + delta, new_position)

        def moved(m):
            boundaries, replaced = shift[m["sent_id"]]
            span = replaced.get((m["pos"][0], m["pos"][1]))
            pos = list(span) if span is not None else [int(boundaries[m["pos"][0]]), int(boundaries[m["pos"][1]])]
            return {**m, "pos": pos}

        vertex_set = [[moved(m) for i, m in enumerate(mentions) if (e, i) not in masked_set] for e, mentions in enumerate(entities)]
        masked_mentions = sorted(((e, moved(entities[e][i])) for e, i in masked), key=lambda x: (x[1]["sent_id"], x[1]["pos"][0]))
        copy = {"title": document.get("title"), "sents": sents, "vertexSet": vertex_set}
        return copy, masked_mentions, blanked

    # -- a batch ------------------------------------------------------------------------------------------------

    def __call__(self, examples):
        rows = [example["documents"][0] for example in examples] + [example["documents"][1] for example in examples]
        half = len(examples)
        rngs = [np.random.default_rng(example["seed"]) for example in examples]
        features, masked_per_row = [], []
        for r, d in enumerate(rows):
            copy, masked, _ = self.corrupt(self.documents[d], rngs[r % half])
            feature = self.featurizer(copy, with_labels=False)
            features.append({k: v for k, v in feature.items() if k != "pair_index"})
            masked_per_row.append(masked)
        batch = DocREDataCollator(self.pad_token_id, 1)(features)
        batch.pop("pair_index", None)
        K, C = self.masked_mentions, self.mention_candidates
        position = np.full((2 * half, K), -1, dtype=np.int64)
        candidates = np.zeros((2 * half, K, C), dtype=np.int64)
        labels = np.full((2 * half, K), -100, dtype=np.int64)
        for r, (feature, masked) in enumerate(zip(features, masked_per_row)):
            rng = rngs[r % half]
            mask_positions = np.flatnonzero(np.asarray(feature["input_ids"]) == self.mask_id)
            num_entities = len(self.documents[rows[r]]["vertexSet"])
            for k, ((e, _), token) in enumerate(zip(masked, mask_positions)):
                if num_entities < C:
                    continue
                others = rng.permutation([x for x in range(num_entities) if x != e])[: C - 1]
                slot = int(rng.integers(C))
                candidates[r, k] = np.insert(others, slot, e)
                position[r, k], labels[r, k] = token, slot
        batch.update(masked_mention_position=torch.from_numpy(position), masked_mention_candidates=torch.from_numpy(candidates),
                     masked_mention_labels=torch.from_numpy(labels))
        batch.update(self._cross_matching(rows, half, rngs))
        batch.update(self._detection(rows, half, rngs))
        batch.update(self._alignment(examples, rows, half, rngs))
        return batch

    def _cross_matching(self, rows, half, rngs):
        C = self.cross_candidates
        query = np.zeros(2 * half, dtype=np.int64)
        candidates = np.zeros((2 * half, C), dtype=np.int64)
        labels = np.full(2 * half, -100, dtype=np.int64)
        for b in range(half):
            first, second = self.documents[rows[b]], self.documents[rows[b + half]]
            names = {}
            for e, mentions in enumerate(second["vertexSet"]):
                for m in mentions:
                    names.setdefault(normalize_entity_name(m["name"]), e)
            matches = sorted({(e, names[normalize_entity_name(m["name"])]) for e, mentions in enumerate(first["vertexSet"])
                              for m in mentions if normalize_entity_name(m["name"]) in names})
            if not matches:
                continue
            rng = rngs[b]
            a, c = matches[int(rng.integers(len(matches)))]
            for row, mine, theirs, partner in ((b, a, c, second), (b + half, c, a, first)):
                others = [x for x in range(len(partner["vertexSet"])) if x != theirs]
                if not others:
                    continue
                picks = rng.choice(others, size=C - 1, replace=len(others) < C - 1)
                slot = int(rng.integers(C))
                query[row], candidates[row], labels[row] = mine, np.insert(picks, slot, theirs), slot
        return {"cross_entity_query": torch.from_numpy(query), "cross_entity_candidates": torch.from_numpy(candidates),
                "cross_entity_labels": torch.from_numpy(labels)}

    def _positives_and_grid(self, d):
        """(trusted labelled pairs, [E, E] labelled grid) of document d."""
        document = self.documents[d]
        grid = _pair_grid(document, len(document["vertexSet"]))
        good = sorted({(label["h"], label["t"]) for label in document.get("labels") or []} & self.trusted[d])
        return good, grid

    def _detection(self, rows, half, rngs):
        G, C = self.groups, self.detection_candidates
        pairs = np.zeros((2 * half, G, C, 2), dtype=np.int64)
        labels = np.full((2 * half, G), -100, dtype=np.int64)
        cross_pairs = np.zeros((half, G, C, 3), dtype=np.int64)
        cross_labels = np.full((half, G), -100, dtype=np.int64)
        info = [self._positives_and_grid(d) for d in rows]
        for r in range(2 * half):
            good, grid = info[r]
            pairs[r], labels[r] = _detection_groups(good, grid, rngs[r % half], G, C)
        for b in range(half):
            (good_a, grid_a), (good_b, grid_b) = info[b], info[b + half]
            rng = rngs[b]
            for g in range(G):
                first, second = _negatives(grid_a, rng, C // 2), _negatives(grid_b, rng, C - C // 2)
                if not good_a or not good_b or first is None or second is None:
                    continue
                group = np.concatenate([np.c_[np.zeros(len(first), dtype=np.int64), first],
                                        np.c_[np.ones(len(second), dtype=np.int64), second]])
                if rng.random() < 0.5:
                    slot = int(rng.integers(C // 2))
                    group[slot] = (0, *good_a[int(rng.integers(len(good_a)))])
                else:
                    slot = C // 2 + int(rng.integers(C - C // 2))
                    group[slot] = (1, *good_b[int(rng.integers(len(good_b)))])
                cross_pairs[b, g], cross_labels[b, g] = group, slot
        return {"detection_pairs": torch.from_numpy(pairs), "detection_labels": torch.from_numpy(labels),
                "cross_detection_pairs": torch.from_numpy(cross_pairs), "cross_detection_labels": torch.from_numpy(cross_labels)}

    def _alignment(self, examples, rows, half, rngs):
        C = 1 + self.alignment_hard_positives + self.alignment_negatives
        query = np.zeros((2 * half, 2), dtype=np.int64)
        candidates = np.zeros((2 * half, C, 2), dtype=np.int64)
        labels = np.full(2 * half, -100, dtype=np.int64)
        for b, example in enumerate(examples):
            if example.get("alignment") is None:
                continue
            rng = rngs[b]
            first_pair, second_pair = (tuple(p) for p in example["alignment"])
            for row, mine, theirs, partner_row in ((b, first_pair, second_pair, b + half), (b + half, second_pair, first_pair, b)):
                partner = self.documents[rows[partner_row]]
                relations = {}
                for label in partner.get("labels") or []:
                    relations.setdefault((label["h"], label["t"]), set()).add(label["r"])
                good = sorted(set(relations) & self.trusted[rows[partner_row]])
                hard = [p for p in good if p != theirs and not relations[p] & relations.get(theirs, set())]
                negatives = _negatives(_pair_grid(partner, len(partner["vertexSet"])), rng, C - 1)
                if negatives is None:
                    continue
                picks = rng.permutation(len(hard))[: self.alignment_hard_positives]
                chosen = [hard[i] for i in picks] + [tuple(p) for p in negatives[: C - 1 - len(picks)]]
                permutation = rng.permutation(C)
                items = np.asarray([theirs, *chosen], dtype=np.int64)[permutation]
                query[row], candidates[row], labels[row] = mine, items, int(np.flatnonzero(permutation == 0)[0])
        return {"alignment_query": torch.from_numpy(query), "alignment_candidates": torch.from_numpy(candidates),
                "alignment_labels": torch.from_numpy(labels)}


# -- a stand-in for distant supervision -------------------------------------------------------------------------------


def distant_stand_in(documents: Sequence[dict], drop: float = 0.3, add: float = 0.6, seed: int = 0) -> list[dict]:
    """DS-like copies of annotated documents (for experiments where no distant data is at hand): each true fact is
    dropped with probability `drop` (DS misses); false facts are added on unlabelled pairs, as many as `add` x the
    remaining positives, each with a relation seen in the corpus for the same (head type, tail type)."""
    rng = random.Random(seed)
    by_types = {}
    for document in documents:
        for label in document.get("labels") or []:
            types = (document["vertexSet"][label["h"]][0].get("type"), document["vertexSet"][label["t"]][0].get("type"))
            by_types.setdefault(types, set()).add(label["r"])
    by_types = {types: sorted(relations) for types, relations in by_types.items()}
    out = []
    for document in documents:
        kept = [dict(label) for label in document.get("labels") or [] if rng.random() >= drop]
        labelled = {(label["h"], label["t"]) for label in document.get("labels") or []}
        free = [(h, t) for h, t in all_ordered_pairs(len(document["vertexSet"])).tolist() if (h, t) not in labelled]
        rng.shuffle(free)
        added = []
        for h, t in free:
            if len(added) >= round(add * len(kept)):
                break
            types = (document["vertexSet"][h][0].get("type"), document["vertexSet"][t][0].get("type"))
            if types in by_types:
                added.append({"h": h, "t": t, "r": rng.choice(by_types[types]), "evidence": []})
        out.append({**document, "labels": kept + added})
    return out
