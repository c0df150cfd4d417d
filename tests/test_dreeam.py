"""DREEAM (Ma et al. 2023): the evidence loss and evidence retrieval against loop references, and a method with its own
loss and output registered from a test file alone (the pair head is the unit of a method)."""

import math

import pytest
import torch
from conftest import SMALL_HEAD
from torch import nn

from hf_docre import (
    METHODS,
    PAIR_HEADS,
    DocREDataCollator,
    DocREFeaturizer,
    DocREMethod,
    DocREModel,
    register_method,
    register_pair_head,
)
from hf_docre.heads_docre import GroupBilinearPairHead, evidence_distribution_loss


def _model(encoder_dirs, relation_info, method="dreeam", **options):
    torch.manual_seed(0)
    return DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), method=method, **{**SMALL_HEAD, **options})


def _batch(model, documents):
    features = DocREFeaturizer.from_model(model).featurize(documents)
    return DocREDataCollator.from_model(model)(features), features


def test_evidence_distribution_loss_equals_a_loop():
    torch.manual_seed(1)
    shares = torch.rand(6, 5) / 5
    shares[1, 2] = 0.0  # a sentence with no weight at all: log(1e-30), as the released code
    counts = torch.randint(0, 3, (6, 5)).float()
    counts[3] = 0.0  # a pair without gold evidence
    got = evidence_distribution_loss(shares, counts)
    for n in range(6):
        total = counts[n].sum().item()
        expected = 0.0
        for s in range(5):
            if counts[n, s] > 0:
                y = counts[n, s].item() / total
                expected += y * (math.log(y) - math.log(max(shares[n, s].item(), 1e-30)))
        assert got[n].item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_dreeam_loss_and_evidence_equal_loops(encoder_dirs, relation_info, redocred_documents):
    from conftest import short_document

    model = _model(encoder_dirs, relation_info).eval()
    # Short documents with relations and evidence keep the token loops quick.
    documents = [short_document(d, 4) for d in redocred_documents[:12] if any(l["evidence"] for l in short_document(d, 4)["labels"])][:2]
    batch, features = _batch(model, documents)
    with torch.no_grad():
        output = model(**batch, output_context_weights=True)
    weights, token_sentence, gold = output.context_weights, batch["token_sentence"], batch["evidence_labels"]
    labels = batch["labels"]
    used, total = 0, 0.0
    for b, document in enumerate(documents):
        num_entities = len(document["vertexSet"])
        num_sentences = len(document["sents"])
        for p in range(num_entities * (num_entities - 1)):
            # The pair's share of each sentence: a loop over its tokens.
            shares = [0.0] * num_sentences
            for token in range(token_sentence.shape[1]):
                s = int(token_sentence[b, token])
                if s >= 0:
                    shares[s] += float(weights[b, p, token])
            assert torch.allclose(output.evidence_scores[b, p, :num_sentences], torch.tensor(shares), atol=1e-6)
            # Evidence decoding: the sentences above the threshold.
            expected = [s for s in range(num_sentences) if shares[s] > model.config.evidence_threshold]
            assert (output.evidence_scores[b, p, :num_sentences] > model.config.evidence_threshold).nonzero().flatten().tolist() == expected
            if labels[b, p, 1:].sum() > 0 and output.scored_pairs[b, p]:  # the tiny encoder's window leaves some unscored
                used += 1
                counts = [float(gold[b, p, s]) for s in range(num_sentences)]
                if sum(counts):
                    total += sum(c / sum(counts) * (math.log(c / sum(counts)) - math.log(max(shares[s], 1e-30)))
                                 for s, c in enumerate(counts) if c > 0)
    assert used > 0
    expected_loss = model.config.evidence_weight * total / used
    assert output.head_losses["evidence_loss"].item() == pytest.approx(expected_loss, rel=1e-4)


def test_evidence_reaches_the_pipeline_and_the_metric(encoder_dirs, relation_info, redocred_documents):
    from transformers import pipeline

    from hf_docre import to_docred_predictions
    from hf_docre.metrics import score_docred

    model = _model(encoder_dirs, relation_info, evidence_threshold=0.05).eval()
    extractor = pipeline("doc-relation-extraction", model=model, tokenizer=model.tokenizer)
    documents = redocred_documents[:2]
    outputs = extractor(documents)
    assert any(r["evidence"] for relations in outputs for r in relations)
    predictions = to_docred_predictions(outputs)
    assert all("evidence" in p for document in predictions for p in document)
    scores = score_docred(predictions, documents)
    assert scores["evidence_f1"] is not None


class ToyMarginHead(GroupBilinearPairHead):
    """A method from a test file: ATLOP's head, an auxiliary loss (logits kept small) and an output (the margin of
    the best relation over the threshold class), with its own hyper-parameter (the penalty's weight)."""

    options = {"penalty_weight": 1e-3}

    def auxiliary_losses(self, pairs, logits, labels):
        return {"logit_penalty": self.option("penalty_weight") * logits.pow(2).mean()}

    def outputs(self, pairs, logits):
        return {"margin": logits[:, 1:].max(-1).values - logits[:, 0]}


def test_a_method_with_its_own_loss_and_output_from_a_test_file(encoder_dirs, relation_info, redocred_documents, tmp_path):
    from transformers import Trainer, TrainingArguments, pipeline

    register_pair_head("toy_margin", ToyMarginHead, exist_ok=True)
    register_method(DocREMethod(name="toy-margin", display_name="Toy margin", paper="Nobody 2026, A toy",
                                citation="@misc{toy}", description="A toy method.",
                                preset={"pair_head": "toy_margin", "penalty_weight": 2e-3}), exist_ok=True)
    try:
        with pytest.raises(ValueError, match="`penalty_weight` .*pair head `toy_margin`.* must be a number"):
            _model(encoder_dirs, relation_info, method="toy-margin", penalty_weight="high")
        model = _model(encoder_dirs, relation_info, method="toy-margin")
        assert isinstance(model.head, ToyMarginHead) and model.config.penalty_weight == 2e-3  # the preset's value
        features = DocREFeaturizer.from_model(model).featurize(redocred_documents[:4])
        batch = DocREDataCollator.from_model(model)(features[:2])
        output = model(**batch)
        assert set(output.head_losses) == {"logit_penalty"}
        assert output.head_outputs["margin"].shape == batch["pair_index"].shape[:2]
        without = output.loss - output.head_losses["logit_penalty"]
        assert output.loss.item() == pytest.approx(without.item() + output.head_losses["logit_penalty"].item())
        before = model.head.head_extractor.weight.detach().clone()
        args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2, use_cpu=True,
                                 report_to="none", save_strategy="no", label_names=["labels"])
        Trainer(model=model, args=args, train_dataset=features, data_collator=DocREDataCollator.from_model(model)).train()
        assert not torch.equal(before, model.head.head_extractor.weight)
        model.save_pretrained(tmp_path / "toy")
        loaded = DocREModel.from_pretrained(tmp_path / "toy").eval()
        assert isinstance(loaded.head, ToyMarginHead) and loaded.config.method == "toy-margin"
        assert loaded.config.penalty_weight == 2e-3
        with torch.no_grad():
            loaded.config.penalty_weight = 0.0
            assert loaded(**batch).head_losses["logit_penalty"].item() == 0.0
        relations = pipeline("doc-relation-extraction", model=loaded, tokenizer=loaded.tokenizer)(redocred_documents[5])
        assert isinstance(relations, list)
    finally:
        PAIR_HEADS.pop("toy_margin", None)
        METHODS.pop("toy-margin", None)


def test_dreeam_has_no_parameters_beyond_atlop(encoder_dirs, relation_info):
    atlop, dreeam = _model(encoder_dirs, relation_info, "atlop"), _model(encoder_dirs, relation_info)
    assert {k: v.shape for k, v in atlop.state_dict().items()} == {k: v.shape for k, v in dreeam.state_dict().items()}
    assert isinstance(dreeam.head, nn.Module) and dreeam.config.evidence_threshold == 0.2


def test_the_trainer_loss_object_adds_the_head_losses(encoder_dirs, relation_info, redocred_documents):
    from hf_docre.training import DocRELoss

    model = _model(encoder_dirs, relation_info).eval()
    batch, _ = _batch(model, redocred_documents[:2])
    with torch.no_grad():
        output = model(**batch)
        assert output.head_losses["evidence_loss"] > 0
        assert torch.allclose(DocRELoss.from_model(model)(output, batch["labels"]), output.loss, atol=1e-6)
        # Under gradient accumulation (the Trainer's num_items_in_batch: the step's label entries) a batch that is
        # half of the step adds half of its evidence loss, as it adds half of its share of the relation loss.
        items = 2 * (batch["labels"] != -100).sum()
        half = model(**batch, num_items_in_batch=items)
        relation_half = (output.loss - output.head_losses["evidence_loss"]) / 2
        assert torch.allclose(half.loss, relation_half + output.head_losses["evidence_loss"] / 2, atol=1e-5)


@pytest.mark.slow
def test_self_training_from_a_teachers_stored_evidence(encoder_dirs, relation_info, redocred_documents, tmp_path):
    """DREEAM's self-training through the same stored-teacher flow as KD-DocRE's distillation."""
    from hf_docre.distillation import write_teacher_logits
    from hf_docre.heads_docre import token_distribution_loss

    teacher = _model(encoder_dirs, relation_info).eval()
    documents = redocred_documents[50:53]
    features = DocREFeaturizer.from_model(teacher).featurize(documents)
    stored = write_teacher_logits(teacher, features, str(tmp_path / "teacher"), batch_size=2, progress=False)
    row = stored[0]
    pairs = len(row["mention_index"]) * (len(row["mention_index"]) - 1)
    assert len(row["teacher_evidence"]) == pairs * len(row["input_ids"])
    # The stored weights are the teacher's own (float16).
    batch = DocREDataCollator.from_model(teacher)([features[0]])
    with torch.no_grad():
        weights = teacher(**batch, output_context_weights=True).context_weights[0, :pairs]
    assert torch.allclose(torch.tensor(row["teacher_evidence"]).view(pairs, -1), weights, atol=1e-3)

    student = _model(encoder_dirs, relation_info)
    student.eval()
    batch = DocREDataCollator.from_model(student)([dict(stored[i]) for i in range(len(stored))])
    assert batch["teacher_evidence"].shape == (*batch["pair_index"].shape[:2], batch["input_ids"].shape[1])
    output = student(**batch, output_context_weights=True)
    assert set(output.head_losses) == {"teacher_evidence_loss"}
    # A loop over the scored pairs: KL(teacher || student) over the tokens, mean over pairs.
    total, count = 0.0, 0
    for b in range(batch["input_ids"].shape[0]):
        for p in range(batch["pair_index"].shape[1]):
            if batch["pair_index"][b, p, 0] >= 0 and output.scored_pairs[b, p]:
                total += token_distribution_loss(output.context_weights[b, p][None], batch["teacher_evidence"][b, p][None]).item()
                count += 1
    assert output.head_losses["teacher_evidence_loss"].item() == pytest.approx(total / count, rel=1e-4)
    output.loss.backward()
    assert student.head.head_extractor.weight.grad.abs().sum() > 0


def test_pseudo_documents_keep_the_evidence_sentences_and_their_mentions(redocred_documents):
    from hf_docre.fusion import pseudo_document

    document = redocred_documents[0]
    made, entity_map = pseudo_document(document, [1, 3])
    assert made["sents"] == [document["sents"][1], document["sents"][3]]
    for new, old in enumerate(entity_map):
        for mention in made["vertexSet"][new]:
            original = next(m for m in document["vertexSet"][old] if m["pos"] == mention["pos"] and [1, 3][mention["sent_id"]] == m["sent_id"])
            words = made["sents"][mention["sent_id"]][mention["pos"][0] : mention["pos"][1]]
            assert words == document["sents"][original["sent_id"]][original["pos"][0] : original["pos"][1]]
    assert all(any(m["sent_id"] in (1, 3) for m in document["vertexSet"][old]) for old in entity_map)


def test_relative_scores_are_the_released_codes():
    from hf_docre.fusion import _top_relations

    logits = torch.tensor([[0.0, 2.0, -1.0, 3.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0], [-3.0, 1.0, 2.0, 3.0, 4.0]])
    found = _top_relations(logits, 3)
    assert found[0] == {3: 3.0, 1: 2.0, 4: 1.0}  # TH (0) not in the top 3: relative to the 3rd logit minus 1 = 0
    assert found[1] == {1: -1.0, 2: -2.0}  # TH in the top 3: relative to it
    assert found[2] == {4: 3.0, 3: 2.0, 2: 1.0}


@pytest.mark.slow
def test_evidence_fusion_runs_tunes_and_keeps_agreeing_relations(encoder_dirs, relation_info, redocred_documents):
    from conftest import short_document

    from hf_docre.fusion import evidence_fusion
    from hf_docre.metrics import score_docred

    model = _model(encoder_dirs, relation_info, evidence_threshold=0.05).eval()
    documents = [short_document(d, 4) for d in redocred_documents[60:64]]
    agreeing, threshold = evidence_fusion(model, documents, threshold=float("inf"))
    assert threshold == float("inf") and any(agreeing)  # relations both readings found, whatever the threshold
    tuned, threshold = evidence_fusion(model, documents, tune=True)
    assert threshold < float("inf")
    assert all(set(map(tuple, map(dict.items, a))) <= set(map(tuple, map(dict.items, t))) for a, t in zip(agreeing, tuned))
    assert score_docred(tuned, documents)["f1"] >= 0
    with pytest.raises(ValueError, match="needs a model that retrieves evidence"):
        evidence_fusion(_model(encoder_dirs, relation_info, method="atlop"), documents, threshold=0.0)
