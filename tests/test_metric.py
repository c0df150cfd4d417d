import copy
import sys
from pathlib import Path

import evaluate
import pytest

from hf_docre.metrics import METRIC_PATH, score_docred, to_official

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from score_perturbed_gold import perturb  # noqa: E402


def mention(name, sent_id):
    return {"name": name, "sent_id": sent_id, "pos": [0, 1], "type": "X"}


# Gold: 4 entities; A and B share sentence 0; C only in sentence 1; D in sentence 2.
GOLD = {
    "title": "doc",
    "sents": [["a"], ["b"], ["c"]],
    "vertexSet": [
        [mention("Alpha", 0)],
        [mention("Beta", 0), mention("Beta B.", 1)],
        [mention("Gamma", 1)],
        [mention("Delta", 2)],
    ],
    "labels": [
        {"h": 0, "t": 1, "r": "P1", "evidence": [0]},  # intra
        {"h": 0, "t": 2, "r": "P2", "evidence": [0, 1]},  # inter
        {"h": 1, "t": 2, "r": "P1", "evidence": [1]},  # intra (Beta B. and Gamma share sentence 1)
        {"h": 3, "t": 0, "r": "P3", "evidence": []},  # inter
        {"h": 3, "t": 0, "r": "P3", "evidence": []},  # duplicate gold label: collapses
    ],
}
# Training facts: (Alpha, Beta, P1) is in train under another title; P1 is the most frequent relation.
TRAIN = [
    {"title": "t1", "vertexSet": [[mention("Alpha", 0)], [mention("Beta", 0)]], "labels": [{"h": 0, "t": 1, "r": "P1", "evidence": []}]},
    {"title": "t2", "vertexSet": [[mention("X", 0)], [mention("Y", 0)]],
     "labels": [{"h": 0, "t": 1, "r": "P1", "evidence": []}, {"h": 1, "t": 0, "r": "P2", "evidence": []}]},
]

PREDICTIONS = [
    {"title": "doc", "h_idx": 0, "t_idx": 1, "r": "P1", "evidence": [0, 2]},  # correct, in train, 1 of 2 evidence right
    {"title": "doc", "h_idx": 0, "t_idx": 1, "r": "P1", "evidence": [1]},  # exact duplicate: dropped
    {"title": "doc", "h_idx": 0, "t_idx": 2, "r": "P2", "evidence": [1]},  # correct, inter, 1 evidence right
    {"title": "doc", "h_idx": 2, "t_idx": 3, "r": "P1"},  # wrong (inter), no evidence
    {"title": "elsewhere", "h_idx": 0, "t_idx": 1, "r": "P1", "evidence": [0]},  # unknown title
]


def test_every_field_by_hand():
    result = score_docred(PREDICTIONS, [GOLD], TRAIN)
    # 4 unique predictions (incl. the unknown title), 4 unique gold facts, 2 correct.
    assert (result["num_predictions"], result["num_gold"], result["num_correct"]) == (4, 4, 2)
    assert result["precision"] == pytest.approx(2 / 4)
    assert result["recall"] == pytest.approx(2 / 4)
    assert result["f1"] == pytest.approx(0.5)
    # Ign: one correct fact's (Alpha, Beta, P1) is in train -> (2 - 1) / (4 - 1); recall unchanged.
    assert result["num_correct_in_train"] == 1
    assert result["ign_precision"] == pytest.approx(1 / 3)
    assert result["ign_f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    # Evidence: predicted sentences (known titles, after dedup) = 2 + 1 + 0 = 3; correct = 1 + 1; gold = 1+2+1+0 = 4.
    assert result["evidence_precision"] == pytest.approx(2 / 3)
    assert result["evidence_recall"] == pytest.approx(2 / 4)
    assert result["evidence_f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    # Intra: gold (0,1) and (1,2); predicted (0,1) correct. Inter: gold (0,2), (3,0); predicted (0,2) correct, (2,3) wrong.
    assert (result["intra_precision"], result["intra_recall"]) == (1.0, 0.5)
    assert result["inter_precision"] == pytest.approx(1 / 2) and result["inter_recall"] == pytest.approx(1 / 2)
    # num_frequent=1: P1 (2 train labels) is frequent. Gold P1: 2, predicted P1 (known titles): 2, correct 1.
    narrow = score_docred(PREDICTIONS, [GOLD], TRAIN, num_frequent=1)
    assert (narrow["frequent_precision"], narrow["frequent_recall"]) == (0.5, 0.5)
    # Long tail: gold P2, P3; predicted P2 (correct).
    assert (narrow["long_tail_precision"], narrow["long_tail_recall"]) == (1.0, 0.5)


def test_variants_and_options():
    atlop = score_docred(PREDICTIONS, [GOLD], TRAIN, ign_epsilon=1e-5)
    assert atlop["ign_precision"] == pytest.approx(1 / (3 + 1e-5), rel=1e-12)
    redocred = score_docred(PREDICTIONS, [GOLD], TRAIN, evidence_count_start=1)
    assert redocred["evidence_recall"] == pytest.approx(2 / 5)
    counted = score_docred(PREDICTIONS, [GOLD], TRAIN, deduplicate=False)
    assert counted["num_predictions"] == 5 and counted["num_correct"] == 3
    without_train = score_docred(PREDICTIONS, [GOLD])
    assert without_train["ign_f1"] is None and without_train["frequent_f1"] is None and without_train["f1"] == 0.5


def test_degenerate_inputs_do_not_crash():
    empty = score_docred([], [GOLD], TRAIN)
    assert empty["precision"] == empty["recall"] == empty["f1"] == empty["ign_f1"] == 0.0
    assert empty["evidence_f1"] is None  # nothing predicted, so no evidence predicted
    no_gold = score_docred(PREDICTIONS, [{**GOLD, "labels": []}], TRAIN)
    assert no_gold["recall"] == 0.0 and no_gold["f1"] == 0.0
    only_train_facts = score_docred([PREDICTIONS[0]], [GOLD], TRAIN)  # every correct prediction is in train
    assert only_train_facts["ign_precision"] == 0.0 and only_train_facts["ign_f1"] == 0.0
    unknown_only = score_docred([PREDICTIONS[-1]], [GOLD])
    assert unknown_only["precision"] == 0.0 and unknown_only["num_predictions"] == 1


def test_per_document_lists_equal_official_format():
    per_document = [[{"h_idx": p["h_idx"], "t_idx": p["t_idx"], "r": p["r"], "evidence": p.get("evidence")} for p in PREDICTIONS if p["title"] == "doc"]]
    official = to_official(per_document, [GOLD])
    assert official[0] == {"title": "doc", "h_idx": 0, "t_idx": 1, "r": "P1", "evidence": [0, 2]}
    known = [p for p in PREDICTIONS if p["title"] == "doc"]
    assert score_docred(per_document, [GOLD], TRAIN) == score_docred(known, [GOLD], TRAIN)


def official_reference(submission, truth, train):
    """The official DocRED evaluation, step by step (sorted + deduplicated submission, annotated-train Ign)."""
    facts = set()
    for document in train:
        for label in document["labels"]:
            for a in document["vertexSet"][label["h"]]:
                for b in document["vertexSet"][label["t"]]:
                    facts.add((a["name"], b["name"], label["r"]))
    std, vertex_sets, total_evidence = {}, {}, 0
    for document in truth:
        vertex_sets[document["title"]] = document["vertexSet"]
        for label in document["labels"]:
            std[(document["title"], label["r"], label["h"], label["t"])] = set(label["evidence"])
            total_evidence += len(label["evidence"])
    ordered = sorted(submission, key=lambda x: (x["title"], x["h_idx"], x["t_idx"], x["r"]))
    key = lambda x: (x["title"], x["h_idx"], x["t_idx"], x["r"])
    answers = [ordered[0]] + [x for prev, x in zip(ordered, ordered[1:]) if key(x) != key(prev)]
    correct = correct_evidence = predicted_evidence = in_train = 0
    for x in answers:
        if x["title"] not in vertex_sets:
            continue
        evidence = set(x.get("evidence", []))
        predicted_evidence += len(evidence)
        key = (x["title"], x["r"], x["h_idx"], x["t_idx"])
        if key in std:
            correct += 1
            correct_evidence += len(std[key] & evidence)
            vs = vertex_sets[x["title"]]
            if any((a["name"], b["name"], x["r"]) in facts for a in vs[x["h_idx"]] for b in vs[x["t_idx"]]):
                in_train += 1
    p, r = correct / len(answers), correct / len(std)
    f1 = 0 if p + r == 0 else 2 * p * r / (p + r)
    ep = correct_evidence / predicted_evidence if predicted_evidence > 0 else 0
    er = correct_evidence / total_evidence
    ef1 = 0 if ep + er == 0 else 2 * ep * er / (ep + er)
    ign_p = (correct - in_train) / (len(answers) - in_train)
    ign_f1 = 0 if ign_p + r == 0 else 2 * ign_p * r / (ign_p + r)
    return f1, ign_f1, ef1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_official_algorithm_on_real_documents(redocred_documents, seed):
    truth, train = redocred_documents[:100], redocred_documents[100:]
    submission = perturb(truth, seed=seed, spurious=2)
    expected = official_reference(submission, truth, train)
    result = score_docred(copy.deepcopy(submission), truth, train)
    assert (result["f1"], result["ign_f1"], result["evidence_f1"]) == pytest.approx(expected, abs=1e-12)
    assert 0.5 < result["f1"] < 1.0 and result["ign_f1"] < result["f1"]


def test_evaluate_metric_wraps_the_pure_function(redocred_documents):
    truth, train = redocred_documents[:20], redocred_documents[200:]
    submission = perturb(truth, seed=5)
    per_document = [[p for p in submission if p["title"] == d["title"]] for d in truth]
    metric = evaluate.load(METRIC_PATH)
    result = metric.compute(predictions=per_document, references=truth, train_documents=train, ign_epsilon=1e-5)
    expected = score_docred(submission, truth, train, ign_epsilon=1e-5)
    assert set(result) == set(expected)
    for key, value in expected.items():
        assert result[key] == (value if value is None else pytest.approx(value)), key


def test_evidence_is_scored_only_when_predicted(redocred_documents):
    truth = redocred_documents[:10]
    without = [{"title": d["title"], "h_idx": l["h"], "t_idx": l["t"], "r": l["r"]} for d in truth for l in d["labels"]]
    result = score_docred(without, truth)
    assert result["f1"] == 1.0
    assert result["evidence_precision"] is result["evidence_recall"] is result["evidence_f1"] is None
    with_empty = [{**p, "evidence": []} for p in without]  # evidence predicted, all empty: a real 0
    assert score_docred(with_empty, truth)["evidence_f1"] == 0.0
    metric = evaluate.load(METRIC_PATH)
    assert metric.compute(predictions=without, references=truth)["evidence_f1"] is None


def test_evaluate_metric_add_batch_add_and_flat_submission(redocred_documents):
    truth, train = redocred_documents[:12], redocred_documents[200:]
    submission = perturb(truth, seed=3, spurious=1)
    expected = score_docred(copy.deepcopy(submission), truth, train)
    per_document = [[p for p in submission if p["title"] == d["title"]] for d in truth]

    metric = evaluate.load(METRIC_PATH)
    flat = metric.compute(predictions=submission, references=truth, train_documents=train)
    for start in range(0, len(truth), 5):  # add_batch with per-document lists, then with flat records
        chunk = truth[start : start + 5]
        if start == 0:
            metric.add_batch(predictions=per_document[start : start + 5], references=chunk)
        else:
            titles = {d["title"] for d in chunk}
            metric.add_batch(predictions=[p for p in submission if p["title"] in titles], references=chunk)
    batched = metric.compute(train_documents=train)
    for document, pairs in zip(truth, per_document):
        metric.add(prediction=pairs, reference=document)
    single = metric.compute(train_documents=train)
    for result in (flat, batched, single):
        for key, value in expected.items():
            assert result[key] == (value if value is None else pytest.approx(value)), key

    with pytest.raises(ValueError, match="not among the references"):
        metric.compute(predictions=submission + [{"title": "nowhere", "h_idx": 0, "t_idx": 1, "r": "P17"}], references=truth)
    with pytest.raises(ValueError, match="11 per-document prediction lists for 12"):
        metric.compute(predictions=per_document[:-1], references=truth)
    with pytest.raises(ValueError, match="11 per-document prediction lists for 12"):
        score_docred(per_document[:-1], truth)


def test_string_ids_and_mismatched_lists_are_errors(redocred_documents, tmp_path):
    from hf_docre.data import write_submission

    truth = redocred_documents[:3]
    label = truth[0]["labels"][0]
    bad = [{"title": truth[0]["title"], "h_idx": str(label["h"]), "t_idx": label["t"], "r": label["r"]}]
    with pytest.raises(ValueError, match=r"predictions\[0\]\.h_idx must be an int"):
        score_docred(bad, truth)
    with pytest.raises(ValueError, match=r"h_idx must be an int"):  # arrow would have made it 3 and counted it right
        evaluate.load(METRIC_PATH).compute(predictions=bad, references=truth)
    with pytest.raises(ValueError, match=r"predictions\[0\]\[0\]\.r must be a relation id"):
        evaluate.load(METRIC_PATH).compute(predictions=[[{"h_idx": 0, "t_idx": 1, "r": 17}], [], []], references=truth)
    per_document = [[{"h_idx": l["h"], "t_idx": l["t"], "r": l["r"]} for l in d["labels"]] for d in truth]
    with pytest.raises(ValueError, match="3 per-document prediction lists for 2 documents"):
        write_submission(per_document, tmp_path, documents=truth[:2])


def test_evidence_recall_counts_repeated_gold_labels_and_ids_as_the_official_script(redocred_documents):
    truth = copy.deepcopy(redocred_documents[:20])
    for document in truth[:10]:  # repeated labels and repeated evidence ids, as some files have
        document["labels"].append(dict(document["labels"][0]))
        document["labels"][1]["evidence"] = document["labels"][1]["evidence"] * 2
    train = redocred_documents[200:]
    submission = perturb(truth, seed=4, spurious=1)
    expected = official_reference(submission, truth, train)
    result = score_docred(copy.deepcopy(submission), truth, train)
    assert (result["f1"], result["ign_f1"], result["evidence_f1"]) == pytest.approx(expected, abs=1e-12)
