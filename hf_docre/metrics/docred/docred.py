"""DocRED relation-extraction metric: F1, Ign-F1, evidence F1, intra/inter-sentence F1, frequent vs long-tail F1.

Self-contained (standard library + evaluate + datasets) so it loads with `evaluate.load(<this folder>)` and can be
published as a Hub metric. `score_docred` is the pure function; `DocRED` wraps it as an `evaluate.Metric`.

Definitions follow the official DocRED evaluation (thunlp/DocRED, code/evaluation.py):
- gold facts are the set of (title, r, h, t); duplicates collapse;
- predictions are sorted and exact (title, h, t, r) duplicates dropped (the first one's evidence is kept);
  `deduplicate=False` counts every prediction, as the Codalab scorer does;
- a prediction whose title is not in the gold documents counts in the precision denominator and is never correct;
- P = correct / |predictions|, R = correct / |gold|, F1 = 2PR / (P + R), and 0 when P + R = 0;
- Ign: a correct fact is "in train" when any (head mention name, tail mention name, r) of it occurs among the
  training documents' facts (all mention-name pairs, exact strings); Ign P = (correct - in_train) /
  (|predictions| - in_train + ign_epsilon); recall is not adjusted;
- evidence: P = correct evidence sentences / predicted evidence sentences (0 when none is predicted),
  R = correct evidence / gold evidence sentences (the count starts at `evidence_count_start`). When no
  prediction carries an `evidence` field (a model that does not predict evidence), the evidence scores are None,
  not 0.
Known variants, as options: ATLOP adds `ign_epsilon=1e-5` to the Ign denominator; Re-DocRED's script starts the
gold evidence count at 1 (`evidence_count_start=1`). Defaults are the official script's (0 and 0).
Zero denominators never raise: a ratio with a zero denominator is 0 (an empty submission scores 0).

Extra breakdowns (not in the official script):
- intra / inter: a gold or predicted pair is intra-sentence when some mention of the head and some mention of the
  tail share a sentence, inter otherwise; P/R/F1 are computed within each group (predictions for unknown titles
  are left out of both);
- frequent / long tail: the `num_frequent` relations with the most labels in the training documents (ties by
  relation id) vs all other relations; P/R/F1 within each group.
"""

from collections import Counter

import datasets
import evaluate

_CITATION = """\
@inproceedings{yao-etal-2019-docred,
    title = "{D}oc{RED}: A Large-Scale Document-Level Relation Extraction Dataset",
    author = "Yao, Yuan and Ye, Deming and Li, Peng and Han, Xu and Lin, Yankai and Liu, Zhenghao and Liu, Zhiyuan and "
             "Huang, Lixin and Zhou, Jie and Sun, Maosong",
    booktitle = "Proceedings of ACL",
    year = "2019",
}
"""

_DESCRIPTION = "Relation F1 and Ign-F1 (plus evidence, intra/inter and frequent/long-tail F1) of the DocRED evaluation."

_KWARGS_DESCRIPTION = """
Args:
    predictions: for each reference document, a list of `{"h_idx", "t_idx", "r", "evidence"}` (evidence optional),
        or the official flat submission (a list of `{"title", "h_idx", "t_idx", "r", "evidence"}`). `add_batch` and
        `add` take the same forms (one reference per prediction list).
    references: the gold documents (`title`, `vertexSet` with mention `name` and `sent_id`, `labels`).
    train_documents: documents whose facts define Ign-F1 and the frequent relations (optional).
    ign_epsilon, evidence_count_start, num_frequent, deduplicate: see the module docstring.
Returns:
    dict with precision, recall, f1, ign_precision, ign_f1, evidence_*, intra_*, inter_*, frequent_*, long_tail_*,
    and the counts behind them. Fields that need train_documents are None without them.
Example:
    >>> metric = evaluate.load("hf_docre/metrics/docred")
    >>> metric.compute(predictions=[[{"h_idx": 0, "t_idx": 1, "r": "P17"}]], references=[gold_document])
"""


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else 0.0


def _f1(precision, recall):
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def train_facts(train_documents):
    """{(head mention name, tail mention name, relation)} over every label of the training documents."""
    facts = set()
    for index, document in enumerate(train_documents):
        title = document.get("title") if isinstance(document, dict) else None
        try:
            entities = document["vertexSet"]
            for label in document.get("labels") or []:
                for end in ("h", "t"):
                    for m, mention in enumerate(entities[label[end]]):
                        if not isinstance(mention.get("name"), str):
                            raise ValueError(f"training document {title!r} (index {index}), field vertexSet[{label[end]}][{m}].name: "
                                             f"Ign-F1 matches mention names, got {mention.get('name')!r}")
                for head in entities[label["h"]]:
                    for tail in entities[label["t"]]:
                        facts.add((head["name"], tail["name"], label["r"]))
        except (KeyError, IndexError, TypeError, AttributeError) as error:
            raise ValueError(f"training document {title!r} (index {index}) is not a DocRED document with vertexSet and "
                             f"labels ({type(error).__name__}: {error})") from None
    return facts


def frequent_relations(train_documents, num_frequent=10):
    """The `num_frequent` relations with the most labels in the training documents (ties by relation id)."""
    counts = Counter(label["r"] for document in train_documents for label in document["labels"])
    return {r for r, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:num_frequent]}


def _check_prediction(p, where, flat=False):
    """A prediction's ids must be ints and its relation a string; the official scorer silently counts "3" as wrong
    and arrow would silently turn it into 3, so both are errors here."""
    if not isinstance(p, dict):
        raise ValueError(f"{where} must be a dict with h_idx, t_idx and r, got {type(p).__name__}")
    for key in ("h_idx", "t_idx"):
        value = p.get(key, p.get(key[0]))
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}.{key} must be an int entity index, got {value!r}")
    if not isinstance(p.get("r"), str):
        raise ValueError(f"{where}.r must be a relation id string, got {p.get('r')!r}")
    if flat and not isinstance(p.get("title"), str):
        raise ValueError(f"{where}.title must be a string, got {p.get('title')!r}")
    evidence = p.get("evidence")
    if evidence is not None and (not isinstance(evidence, (list, tuple))
                                 or not all(isinstance(x, int) and not isinstance(x, bool) for x in evidence)):
        raise ValueError(f"{where}.evidence must be a list of sentence ids (ints), got {evidence!r}")


def to_official(predictions, references):
    """Per-document prediction lists (aligned with `references`) -> the official flat submission format."""
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} per-document prediction lists for {len(references)} documents; give one list per "
            "document, in the same order."
        )
    official = []
    for i, (document, pairs) in enumerate(zip(references, predictions)):
        if not isinstance(pairs, (list, tuple)):
            raise ValueError(f"predictions[{i}] must be the list of document {i}'s predicted relations, got {type(pairs).__name__}")
        for j, p in enumerate(pairs):
            _check_prediction(p, f"predictions[{i}][{j}]")
            item = {"title": document["title"], "h_idx": p.get("h_idx", p.get("h")), "t_idx": p.get("t_idx", p.get("t")), "r": p["r"]}
            if p.get("evidence") is not None:
                item["evidence"] = list(p["evidence"])
            official.append(item)
    return official


def _is_intra(entities, head, tail):
    return bool({m["sent_id"] for m in entities[head]} & {m["sent_id"] for m in entities[tail]})


def _prf(correct, predicted, gold):
    precision, recall = _ratio(correct, predicted), _ratio(correct, gold)
    return precision, recall, _f1(precision, recall)


def score_docred(
    predictions,
    references,
    train_documents=None,
    *,
    facts_in_train=None,
    ign_epsilon=0.0,
    evidence_count_start=0,
    num_frequent=10,
    deduplicate=True,
):
    """Score predictions against gold DocRED documents. See the module docstring for every definition.

    Args:
        predictions: the official submission (a list of `{"title", "h_idx", "t_idx", "r", "evidence"}`), or one
            list of `{"h_idx", "t_idx", "r", "evidence"}` per reference document.
        references: gold documents.
        train_documents: training documents for Ign-F1 and the frequent relations; or pass `facts_in_train`.
    """
    if predictions is None or isinstance(predictions, (str, dict)):
        raise ValueError(f"score_docred: predictions must be a list (the official submission, or one list per document), "
                         f"got {type(predictions).__name__}")
    if references is None or isinstance(references, (str, dict)):
        raise ValueError(f"score_docred: references must be a list of gold DocRED documents, got {type(references).__name__}")
    references = list(references)
    titles = {}
    for index, document in enumerate(references):
        if not isinstance(document, dict) or not isinstance(document.get("vertexSet"), list):
            raise ValueError(f"score_docred: references[{index}] is not a DocRED document with a title and a vertexSet")
        if document.get("title") in titles:
            raise ValueError(f"score_docred: references[{index}] repeats the title {document.get('title')!r} of references"
                             f"[{titles[document.get('title')]}]; predictions are matched by title, so titles must be unique")
        titles[document.get("title")] = index
    predictions = list(predictions)
    if any(isinstance(p, (list, tuple)) for p in predictions):
        if len(predictions) != len(references):
            raise ValueError(
                f"score_docred: {len(predictions)} per-document prediction lists for {len(references)} reference "
                "documents; give one list per reference document, in the same order (or the official flat submission)."
            )
        predictions = to_official(predictions, references)

    for i, p in enumerate(predictions):
        _check_prediction(p, f"predictions[{i}]", flat=True)

    gold = {}
    entities_of = {}
    gold_evidence = evidence_count_start
    for document in references:
        entities_of[document["title"]] = document["vertexSet"]
        for label in document.get("labels") or []:
            evidence = label.get("evidence") or []
            # As the official script: a repeated label keeps the last one's evidence, but every label's evidence
            # list (repeated ids included) counts in the recall denominator.
            gold[(document["title"], label["r"], label["h"], label["t"])] = set(evidence)
            gold_evidence += len(evidence)

    if deduplicate:
        predictions.sort(key=lambda x: (x["title"], x["h_idx"], x["t_idx"], x["r"]))
        unique = []
        for x in predictions:
            key = (x["title"], x["h_idx"], x["t_idx"], x["r"])
            if not unique or key != (unique[-1]["title"], unique[-1]["h_idx"], unique[-1]["t_idx"], unique[-1]["r"]):
                unique.append(x)
        predictions = unique

    if facts_in_train is None and train_documents is not None:
        facts_in_train = train_facts(train_documents)
    frequent = frequent_relations(train_documents, num_frequent) if train_documents is not None else None

    correct = correct_in_train = correct_evidence = predicted_evidence = 0
    groups = {name: Counter() for name in ("intra", "inter", "frequent", "long_tail")}
    for x in predictions:
        title, head, tail, relation = x["title"], x["h_idx"], x["t_idx"], x["r"]
        entities = entities_of.get(title)
        if entities is None:
            continue
        evidence = set(x.get("evidence") or [])
        predicted_evidence += len(evidence)
        is_correct = (title, relation, head, tail) in gold
        in_range = 0 <= head < len(entities) and 0 <= tail < len(entities)
        locality = ("intra" if _is_intra(entities, head, tail) else "inter") if in_range else None
        band = None if frequent is None else ("frequent" if relation in frequent else "long_tail")
        for group in (locality, band):
            if group is not None:
                groups[group]["predicted"] += 1
                groups[group]["correct"] += is_correct
        if not is_correct:
            continue
        correct += 1
        correct_evidence += len(gold[(title, relation, head, tail)] & evidence)
        if facts_in_train is not None and any(
            (h["name"], t["name"], relation) in facts_in_train for h in entities[head] for t in entities[tail]
        ):
            correct_in_train += 1

    for title, relation, head, tail in gold:
        groups["intra" if _is_intra(entities_of[title], head, tail) else "inter"]["gold"] += 1
        if frequent is not None:
            groups["frequent" if relation in frequent else "long_tail"]["gold"] += 1

    precision, recall, f1 = _prf(correct, len(predictions), len(gold))
    if any(x.get("evidence") is not None for x in predictions):
        evidence_precision = _ratio(correct_evidence, predicted_evidence)
        evidence_recall = _ratio(correct_evidence, gold_evidence)
        evidence_f1 = _f1(evidence_precision, evidence_recall)
    else:  # a model that predicts no evidence has no evidence score (not 0)
        evidence_precision = evidence_recall = evidence_f1 = None
    result = {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "ign_precision": None,
        "ign_f1": None,
        "evidence_precision": evidence_precision,
        "evidence_recall": evidence_recall,
        "evidence_f1": evidence_f1,
        "num_predictions": len(predictions),
        "num_gold": len(gold),
        "num_correct": correct,
        "num_correct_in_train": correct_in_train if facts_in_train is not None else None,
    }
    if facts_in_train is not None:
        ign_precision = _ratio(correct - correct_in_train, len(predictions) - correct_in_train + ign_epsilon)
        result["ign_precision"] = ign_precision
        result["ign_f1"] = _f1(ign_precision, recall)
    for name, counts in groups.items():
        if name in ("frequent", "long_tail") and frequent is None:
            values = (None, None, None)
        else:
            values = _prf(counts["correct"], counts["predicted"], counts["gold"])
        for key, value in zip(("precision", "recall", "f1"), values):
            result[f"{name}_{key}"] = value
    return result


_MENTION = {"name": datasets.Value("string"), "sent_id": datasets.Value("int64")}
_LABEL = {"h": datasets.Value("int64"), "t": datasets.Value("int64"), "r": datasets.Value("string"), "evidence": datasets.List(datasets.Value("int64"))}
_PREDICTION = {
    "h_idx": datasets.Value("int64"), "t_idx": datasets.Value("int64"), "r": datasets.Value("string"),
    "evidence": datasets.List(datasets.Value("int64")),
}


def _rows(columns):
    """Arrow gives a list of structs as a dict of lists; turn it back into a list of dicts."""
    if isinstance(columns, dict):
        return [dict(zip(columns, values)) for values in zip(*columns.values())]
    return list(columns)


def _reference_fields(document):
    """Only the fields the metric reads, so documents with extra fields (pos, type, ...) are accepted."""
    if not isinstance(document, dict) or "title" not in document or "vertexSet" not in document:
        raise ValueError("DocRED metric: each reference must be a DocRED document with `title`, `vertexSet` and `labels`.")
    return {
        "title": document["title"],
        "vertexSet": [[{"name": m["name"], "sent_id": m["sent_id"]} for m in e] for e in document["vertexSet"]],
        "labels": [
            {"h": l["h"], "t": l["t"], "r": l["r"], "evidence": list(l.get("evidence") or [])}
            for l in document.get("labels") or []
        ],
    }


def _prediction_fields(p, where="prediction"):
    _check_prediction(p, where)
    evidence = p.get("evidence")
    return {
        "h_idx": p.get("h_idx", p.get("h")),
        "t_idx": p.get("t_idx", p.get("t")),
        "r": p["r"],
        "evidence": None if evidence is None else list(evidence),
    }


def _prepare(predictions, references):
    """Per-document prediction lists aligned with `references`, from per-document lists or a flat submission."""
    if references is None or predictions is None:
        raise ValueError("DocRED metric: pass both `predictions` and `references`.")
    references = [_reference_fields(d) for d in references]
    predictions = list(predictions)
    if predictions and isinstance(predictions[0], dict):  # the official flat submission
        by_title = {d["title"]: [] for d in references}
        unknown = [p for p in predictions if p.get("title") not in by_title]
        if unknown:
            raise ValueError(
                f"DocRED metric: {len(unknown)} predictions name titles that are not among the references "
                f"(first: {unknown[0].get('title')!r}). Score a submission for other documents with "
                "hf_docre.metrics.score_docred(submission, references), which counts them as wrong like the official script."
            )
        for p in predictions:
            by_title[p["title"]].append(p)
        predictions = [by_title[d["title"]] for d in references]
    elif len(predictions) != len(references):
        raise ValueError(
            f"DocRED metric: {len(predictions)} per-document prediction lists for {len(references)} reference documents; "
            "give one list per reference document, in the same order (or the official flat submission)."
        )
    return [
        [_prediction_fields(p, f"predictions[{d}][{i}]") for i, p in enumerate(pairs)] for d, pairs in enumerate(predictions)
    ], references


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DocRED(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.List(_PREDICTION),
                    "references": {
                        "title": datasets.Value("string"),
                        "vertexSet": datasets.List(datasets.List(_MENTION)),
                        "labels": datasets.List(_LABEL),
                    },
                }
            ),
            reference_urls=["https://github.com/thunlp/DocRED"],
        )

    def compute(self, *, predictions=None, references=None, **kwargs):
        """Score predictions against gold documents: per-document lists, or the official flat submission
        (`{"title", "h_idx", "t_idx", "r", "evidence"}` records). Extra document fields are ignored."""
        if predictions is not None or references is not None:
            predictions, references = _prepare(predictions, references)
        return super().compute(predictions=predictions, references=references, **kwargs)

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of per-document prediction lists (or flat records) and their reference documents."""
        predictions, references = _prepare(predictions, references)
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one document's prediction list and its reference document."""
        predictions, references = _prepare([prediction if prediction is not None else []], [reference])
        return super().add(prediction=predictions[0], reference=references[0], **kwargs)

    def _compute(self, predictions, references, train_documents=None, ign_epsilon=0.0, evidence_count_start=0, num_frequent=10, deduplicate=True):
        references = [
            {
                "title": d["title"],
                "vertexSet": [_rows(e) for e in _rows(d["vertexSet"])] if isinstance(d["vertexSet"], dict) else [_rows(e) for e in d["vertexSet"]],
                "labels": _rows(d["labels"]),
            }
            for d in references
        ]
        predictions = [_rows(p) for p in predictions]
        return score_docred(
            predictions, references, train_documents, ign_epsilon=ign_epsilon, evidence_count_start=evidence_count_start,
            num_frequent=num_frequent, deduplicate=deduplicate,
        )
