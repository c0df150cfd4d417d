"""The other published methods: BERT baseline, two-step, KD-DocRE (axial attention, adaptive focal loss, distillation)."""

import copy
import math

import numpy as np
import pytest
import torch
from conftest import SMALL_HEAD, short_document
from datasets import Dataset
from torch import nn
from transformers import Trainer, TrainingArguments

from hf_docre import DocREConfig, DocREDataCollator, DocREFeaturizer, DocREModel
from hf_docre.distillation import load_teacher_logits, teacher_logits_of, write_teacher_logits
from hf_docre.layers_docre import AxialPairAttention
from hf_docre.losses_docre import adaptive_focal_loss, two_step_loss
from hf_docre.processing_docre import feature_pairs, num_feature_pairs
from hf_docre.training import DocRELoss, optimizer_cls_and_kwargs


def _no_dropout(model):
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def _model(encoder_dirs, relation_info, kind="bert", **options):
    torch.manual_seed(0)
    head = {} if options.get("method") in ("bert-baseline", "two-step") else SMALL_HEAD
    return DocREModel.from_encoder(encoder_dirs[kind], relations=list(relation_info), **{**head, **options})


def _batch(model, documents):
    features = DocREFeaturizer.from_model(model).featurize(documents)
    return DocREDataCollator.from_model(model)(features), features


# -- adaptive focal loss --------------------------------------------------------------------------------------------


def _afl_by_hand(logits, labels, gamma, released_code=False):
    """Eq. 9-11 written out term by term, one pair at a time (loss = minus Eq. 11's log-likelihood)."""
    losses = []
    for row, gold in zip(logits.tolist(), labels.tolist()):
        positives = [r for r in range(1, len(row)) if gold[r] == 1]
        total = 0.0
        for r in positives:
            p = math.exp(row[r]) / (math.exp(row[r]) + math.exp(row[0]))  # Eq. 9
            weight = (1 - p) ** gamma
            total -= (1 + weight if released_code else weight) * math.log(p)
        negatives = [0] + [r for r in range(1, len(row)) if gold[r] == 0]
        p_threshold = math.exp(row[0]) / sum(math.exp(row[r]) for r in negatives)  # Eq. 10
        total -= math.log(p_threshold)
        losses.append(total)
    return torch.tensor(losses, dtype=torch.float64)


AFL_LOGITS = torch.tensor(
    [[0.5, 2.0, -1.0, 0.3, 1.1], [0.0, -0.5, 0.7, 0.2, -2.0], [1.0, 0.1, 0.2, 3.0, -1.0], [-0.2, 0.4, 0.4, 0.4, 0.4]],
    dtype=torch.float64,
)
AFL_LABELS = torch.tensor(
    [[0, 1, 0, 0, 1], [1, 0, 0, 0, 0], [0, 0, 1, 1, 0], [0, 1, 1, 1, 1]], dtype=torch.float64
)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_adaptive_focal_loss_equals_eq_11(gamma):
    expected = _afl_by_hand(AFL_LOGITS, AFL_LABELS, gamma)
    assert torch.allclose(adaptive_focal_loss(AFL_LOGITS, AFL_LABELS, gamma), expected, atol=1e-10)
    released = _afl_by_hand(AFL_LOGITS, AFL_LABELS, gamma, released_code=True)
    assert torch.allclose(adaptive_focal_loss(AFL_LOGITS, AFL_LABELS, gamma, "released_code"), released, atol=1e-10)
    assert not torch.allclose(expected, released)


def test_adaptive_focal_loss_one_case_by_hand():
    # One positive (logit 2, TH 0): P = sigmoid(2); one negative (logit 1): P(TH) = e^0 / (e^0 + e^1).
    logits = torch.tensor([[0.0, 2.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    p = 1 / (1 + math.exp(-2))
    expected = -((1 - p) ** 0.5) * math.log(p) - math.log(1 / (1 + math.e))
    assert adaptive_focal_loss(logits, labels, 0.5).item() == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="positive_weight"):
        adaptive_focal_loss(logits, labels, 0.5, "other")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gamma", [0.0, 0.1, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("positive_weight", ["paper", "released_code"])
def test_adaptive_focal_loss_finite_when_saturated(gamma, dtype, positive_weight):
    # Margins where P(r) rounds to exactly 1 or 0 in float32 and float64: (1 - P)^gamma with gamma < 1 used to
    # have an infinite derivative there, and one such pair turned a whole batch's gradients into NaN.
    logits = torch.tensor(
        [[0.0, 40.0, -3.0, 800.0], [0.0, -40.0, 2.0, 1e4], [-1e4, 1e4, 0.0, 5.0], [1.0, 1.0 + 1e-7, 30.0, -30.0]],
        dtype=dtype, requires_grad=True,
    )
    labels = torch.tensor([[0, 1, 0, 1], [0, 1, 1, 1], [0, 1, 1, 0], [0, 1, 1, 0]], dtype=dtype)
    loss = adaptive_focal_loss(logits, labels, gamma, positive_weight)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logits.grad).all()
    # Away from saturation it is still Eq. 11.
    mild = AFL_LOGITS.clone()
    assert torch.allclose(
        adaptive_focal_loss(mild, AFL_LABELS, gamma, positive_weight),
        _afl_by_hand(mild, AFL_LABELS, gamma, released_code=positive_weight == "released_code"), atol=1e-10,
    )


# -- axial attention ------------------------------------------------------------------------------------------------


def test_axial_attention_equals_a_loop_over_cells():
    torch.manual_seed(0)
    module = AxialPairAttention(8)
    num_entities = 5
    pairs = [(h, t) for h in range(num_entities) for t in range(num_entities) if h != t and (h + t) % 3]  # a subset
    heads = torch.tensor([h for h, _ in pairs])
    tails = torch.tensor([t for _, t in pairs])
    g = torch.randn(len(pairs), 8)
    ours = module(g, torch.zeros_like(heads), heads, tails, 1, num_entities)
    index = {pair: n for n, pair in enumerate(pairs)}
    q, k, v = module.query(g), module.key(g), module.value(g)
    for n, (s, o) in enumerate(pairs):
        column = [index[(p, o)] for p in range(num_entities) if (p, o) in index]
        row = [index[(s, p)] for p in range(num_entities) if (s, p) in index]
        expected = g[n].clone()
        for cells in (column, row):
            weights = torch.softmax(torch.stack([q[n] @ k[c] for c in cells]), 0)
            expected += sum(w * v[c] for w, c in zip(weights, cells))
        assert torch.allclose(ours[n], expected, atol=1e-5)


def test_kd_docre_document_alone_equals_padded_batch(encoder_dirs, relation_info, redocred_documents):
    model = _model(encoder_dirs, relation_info, method="kd-docre").eval()
    assert model.config.axial_attention and model.config.loss == "afl"
    small = short_document(redocred_documents[5], 2)
    large = redocred_documents[6]
    assert len(large["vertexSet"]) > len(small["vertexSet"])
    alone, _ = _batch(model, [small])
    together, _ = _batch(model, [large, small])
    with torch.no_grad():
        single = model(**alone).logits[0]
        batched = model(**together).logits[1, : single.shape[0]]
    assert torch.allclose(single, batched, atol=1e-5)


def _many_entities(count):
    words = []
    for i in range(count):
        words += [f"e{i}", "and"]
    return {
        "title": f"{count} entities",
        "sents": [words[: count], words[count:]],
        "vertexSet": [
            [{"name": f"e{i}", "pos": [(2 * i) % count, (2 * i) % count + 1], "sent_id": (2 * i) // count, "type": "MISC"}]
            for i in range(count)
        ],
    }


def test_kd_docre_with_60_entities(encoder_dirs, relation_info):
    model = _model(encoder_dirs, relation_info, method="kd-docre").eval()
    document = _many_entities(60)
    batch, features = _batch(model, [document])
    assert len(features[0]["input_ids"]) > model.config.window_size  # windowed as well
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, 60 * 59, model.config.num_relations) and torch.isfinite(logits).all()


def test_kd_docre_trains_with_afl(encoder_dirs, relation_info, redocred_documents):
    model = _no_dropout(_model(encoder_dirs, relation_info, method="kd-docre", loss="afl", focal_positive_weight="released_code"))
    batch, _ = _batch(model, [short_document(redocred_documents[7], 3)])
    output = model(**batch)
    output.loss.backward()
    assert model.head.axial_attention.query.weight.grad.abs().sum() > 0 and model.head.classifier.weight.grad.abs().sum() > 0


# -- BERT baseline ---------------------------------------------------------------------------------------------------


def test_presets_and_explicit_options():
    config = DocREConfig(method="bert-baseline")
    assert (config.entity_marker, config.mention_representation, config.pair_head, config.emb_size, config.loss) == (
        None, "span", "bilinear", 128, "bce")
    assert config.decoding == "global_threshold"
    assert DocREConfig(method="kd-docre", loss="atl").loss == "atl"  # explicit wins
    assert DocREConfig(method="two-step").decoding == "two_step"
    reloaded = DocREConfig.from_dict(DocREConfig(method="bert-baseline", use_context_pooling=False).to_dict())
    assert reloaded.method == "bert-baseline" and reloaded.entity_marker is None
    with pytest.raises(ValueError, match="method"):
        DocREConfig(method="nope")


def test_bert_baseline_entity_is_the_mean_of_its_mention_tokens(encoder_dirs, relation_info, redocred_documents):
    model = _model(encoder_dirs, relation_info, method="bert-baseline").eval()
    featurizer = DocREFeaturizer.from_model(model)
    # A first sentence with several entities that fits one window, so the plain encoder is the reference.
    document = next(d for d in (short_document(x, 1) for x in redocred_documents[8:60])
                    if len(d["vertexSet"]) >= 3 and len(featurizer(d)["input_ids"]) <= model.config.window_size)
    batch, features = _batch(model, [document])
    feature = features[0]
    tokenizer = model.tokenizer
    # Each span holds exactly the tokens of the mention's words.
    for mentions, starts, ends in zip(document["vertexSet"], feature["mention_index"], feature["mention_end"]):
        for mention, start, end in zip(mentions, starts, ends):
            words = document["sents"][mention["sent_id"]][mention["pos"][0] : mention["pos"][1]]
            expected = tokenizer(words, is_split_into_words=True, add_special_tokens=False)["input_ids"]
            assert feature["input_ids"][start:end] == expected
    with torch.no_grad():
        output = model(**batch, output_entity_embeddings=True)
        hidden = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[0]
    for e, (starts, ends) in enumerate(zip(feature["mention_index"], feature["mention_end"])):
        tokens = [i for start, end in zip(starts, ends) for i in range(start, end)]
        assert torch.allclose(output.entity_embeddings[0, e], hidden[tokens].mean(0), atol=1e-5)
    # The head is the paper's: a projection to 128 then a bilinear layer, BCE decoding with a global threshold.
    assert model.head.projection.out_features == 128 and isinstance(model.head.bilinear, nn.Bilinear)  # (PairBilinear)


def test_bert_baseline_threshold_tuning(encoder_dirs, relation_info, redocred_documents):
    model = _model(encoder_dirs, relation_info, method="bert-baseline").eval()
    batch, _ = _batch(model, [short_document(d, 3) for d in redocred_documents[10:13]])
    with torch.no_grad():
        logits = model(**batch).logits
    threshold, f1 = model.tune_global_threshold(logits, batch["labels"])
    assert model.config.global_threshold == threshold and 0.0 <= f1 <= 1.0


# -- two-step --------------------------------------------------------------------------------------------------------


def test_two_step_loss_samples_three_na_pairs_per_related_pair():
    torch.manual_seed(0)
    labels = torch.zeros(40, 4)
    labels[:5, 2] = 1  # 5 related pairs, 35 NA pairs
    labels[5:, 0] = 1
    logits = torch.randn(40, 4)
    per_pair = two_step_loss(logits, labels, negative_sampling_ratio=3.0)
    assert (per_pair[:5] > 0).all()
    assert int((per_pair[5:] > 0).sum()) == 15
    assert int((two_step_loss(logits, labels, sample=False)[5:] > 0).sum()) == 35


def test_two_step_predicts_only_pairs_step_1_accepts_and_round_trips(encoder_dirs, relation_info, redocred_documents, tmp_path):
    model = _model(encoder_dirs, relation_info, method="two-step").eval()
    assert model.head.existence_encoder is not None  # two models, as in the paper
    with torch.no_grad():
        model.head.existence_bilinear.bias.fill_(0.0)
        model.head.existence_bilinear.weight.normal_(0, 3.0)  # some pairs accepted, some not
    documents = [short_document(d, 3) for d in redocred_documents[14:17]]
    batch, features = _batch(model, documents)
    with torch.no_grad():
        logits = model(**batch).logits
    predicted = model.decode(logits)
    real = batch["pair_index"][..., 0] >= 0
    accepted = (logits[..., 0] < 0) & real
    assert 0 < int(accepted.sum()) < int(real.sum())
    has_relation = predicted[..., 1:].any(-1)
    assert torch.equal(has_relation, accepted)  # every accepted pair gets at least its best relation; no other pair
    model.save_pretrained(tmp_path / "two-step")
    loaded = DocREModel.from_pretrained(tmp_path / "two-step").eval()
    assert loaded.config.two_step and loaded.head.existence_encoder is not None
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, logits)
    from transformers import pipeline

    extract = pipeline("doc-relation-extraction", model=loaded)
    results = extract(documents)
    for b, (feature, relations) in enumerate(zip(features, results)):
        pairs = feature_pairs(feature).tolist()
        accepted_pairs = {tuple(pairs[p]) for p in accepted[b, : len(pairs)].nonzero().squeeze(-1).tolist()}
        assert {(r["head"]["index"], r["tail"]["index"]) for r in relations} == accepted_pairs
        for r in relations:
            assert 0.0 < r["score"] <= 1.0


def test_two_step_trainer_loss_equals_model_loss(encoder_dirs, relation_info, redocred_documents):
    model = _no_dropout(_model(encoder_dirs, relation_info, method="two-step", two_step_shared_encoder=True))
    assert model.head.existence_encoder is None
    batch, _ = _batch(model, [short_document(d, 3) for d in redocred_documents[20:23]])
    loss_fn = DocRELoss.from_model(model)
    torch.manual_seed(1)
    expected = model(**batch).loss
    torch.manual_seed(1)
    outputs = model(**{k: v for k, v in batch.items() if k != "labels"})
    assert torch.allclose(loss_fn(outputs, batch["labels"]), expected, atol=1e-6)


# -- distillation ----------------------------------------------------------------------------------------------------


def _trainer(model, dataset, tmp_path, steps, lr=3e-3):
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=steps, learning_rate=lr,
        lr_scheduler_type="constant", label_names=["labels"], report_to=[], logging_steps=1, save_strategy="no",
        use_cpu=True, seed=0, remove_unused_columns=False,
    )
    return Trainer(
        model=model, args=args, train_dataset=dataset, data_collator=DocREDataCollator.from_model(model),
        compute_loss_func=DocRELoss.from_model(model), optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(model, lr, lr),
    )


def _made_up_distant(documents, seed=0):
    """'Distant' labels: the gold labels with some dropped and some wrong ones added."""
    import random

    rng = random.Random(seed)
    noisy = []
    for document in documents:
        labels = [l for l in document["labels"] if rng.random() > 0.3]
        n = len(document["vertexSet"])
        for _ in range(2):
            h, t = rng.sample(range(n), 2)
            labels.append({"h": h, "t": t, "r": rng.choice(["P17", "P131", "P27"]), "evidence": []})
        noisy.append({**document, "labels": labels})
    return noisy


@pytest.mark.slow
def test_distillation_teacher_student_finetune(encoder_dirs, relation_info, redocred_documents, tmp_path):
    annotated = [d for d in (short_document(x, 3) for x in redocred_documents[60:70]) if d["labels"] and len(d["vertexSet"]) > 2][:4]
    distant = _made_up_distant([d for d in (short_document(x, 3) for x in redocred_documents[70:90]) if len(d["vertexSet"]) > 2][:8])

    # 1. Teacher on the annotated data.
    teacher = _no_dropout(_model(encoder_dirs, relation_info, method="kd-docre"))
    featurizer = DocREFeaturizer.from_model(teacher)
    annotated_features = Dataset.from_list(featurizer.featurize(annotated))
    _trainer(teacher, annotated_features, tmp_path / "teacher", steps=6).train()

    # 2. Teacher logits over the distant data, stored in shards; a second call resumes (nothing recomputed).
    distant_features = featurizer.featurize(distant)
    folder = tmp_path / "logits"
    stored = write_teacher_logits(teacher, distant_features, str(folder), batch_size=3, shard_size=3, progress=False)
    shards = sorted(folder.glob("teacher-*.parquet"))
    assert len(shards) == 3 and len(stored) == len(distant_features)
    first_written = shards[0].stat().st_mtime_ns
    shards[-1].unlink()  # as if the run had stopped before the last shard
    with pytest.raises(FileNotFoundError, match="not written yet"):
        load_teacher_logits(str(folder))
    stored = write_teacher_logits(teacher, distant_features, str(folder), batch_size=3, shard_size=3, progress=False)
    assert shards[0].stat().st_mtime_ns == first_written and shards[-1].exists()
    # The folder belongs to this teacher and these documents: a retrained teacher at the same path, or other
    # documents of the same count, are refused (they used to get the old logits and titles), or rebuilt on request.
    other_documents = featurizer.featurize(_made_up_distant(
        [d for d in (short_document(x, 3) for x in redocred_documents[90:120]) if len(d["vertexSet"]) > 2][:8]))
    assert len(other_documents) == len(distant_features)
    with pytest.raises(ValueError, match="differ in features_fingerprint"):
        write_teacher_logits(teacher, other_documents, str(folder), batch_size=3, shard_size=3, progress=False)
    before = teacher_logits_of(stored[0], teacher.config.num_relations)
    retrained = copy.deepcopy(teacher)
    with torch.no_grad():
        retrained.head.classifier.bias.add_(1.0)
    with pytest.raises(ValueError, match="differ in teacher_fingerprint"):
        write_teacher_logits(retrained, distant_features, str(folder), batch_size=3, shard_size=3, progress=False)
    rebuilt = write_teacher_logits(retrained, distant_features, str(folder / ".." / "logits"), batch_size=3, shard_size=3,
                                   progress=False, overwrite=True)
    assert not np.allclose(teacher_logits_of(rebuilt[0], teacher.config.num_relations), before)
    stored = write_teacher_logits(teacher, distant_features, str(folder), batch_size=3, shard_size=3, progress=False, overwrite=True)
    # What is stored is the teacher's logits for exactly the feature's pairs (to float16 precision).
    teacher.eval()
    collator = DocREDataCollator.from_model(teacher)
    with torch.no_grad():
        direct = teacher(**{k: v for k, v in collator(distant_features[:2]).items() if k != "labels"}).logits
    for b in range(2):
        row = stored[b]
        assert row["input_ids"] == distant_features[b]["input_ids"]
        values = torch.from_numpy(teacher_logits_of(row, teacher.config.num_relations))
        assert values.shape[0] == num_feature_pairs(distant_features[b])
        assert torch.allclose(values, direct[b, : values.shape[0]], atol=1e-2, rtol=1e-3)

    # 3. Student on distant labels + teacher logits: the batch carries the stored logits and the loss includes MSE.
    student = _no_dropout(_model(encoder_dirs, relation_info, method="kd-docre"))
    batch = DocREDataCollator.from_model(student)([stored[0], stored[1]])
    for b in range(2):
        values = torch.from_numpy(teacher_logits_of(stored[b], student.config.num_relations))
        assert torch.equal(batch["teacher_logits"][b, : len(values)], values)
    student.eval()
    with torch.no_grad():
        output = student(**batch)
        without = student(**{k: v for k, v in batch.items() if k != "teacher_logits"})
        # Pairs sharing no encoder window are not scored (distant_pairs): they add 0, and the mean is over all
        # labelled pairs.
        scored = output.scored_pairs > 0
        labeled = batch["labels"][..., 0] != -100
        mse = (output.logits[scored] - batch["teacher_logits"][scored]).pow(2).mean(-1).sum() / labeled.sum()
    assert torch.allclose(output.loss, without.loss + mse, atol=1e-5)  # Eq. 13: L = L_KD + L_RE
    student.train()
    trainer = _trainer(student, stored, tmp_path / "student", steps=8)
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[-1] < losses[0]

    # 4. Fine-tune the student on the annotated data (no teacher logits), then save/load it.
    _trainer(student, annotated_features, tmp_path / "finetune", steps=4).train()
    student.save_pretrained(tmp_path / "student-final")
    assert DocREModel.from_pretrained(tmp_path / "student-final").config.method == "kd-docre"


def test_distillation_kl_option(encoder_dirs, relation_info, redocred_documents):
    model = _no_dropout(_model(encoder_dirs, relation_info, method="kd-docre", distillation_loss="kl")).eval()
    batch, _ = _batch(model, [short_document(redocred_documents[30], 3)])
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        same = model(**{k: v for k, v in batch.items() if k != "labels"}, teacher_logits=logits).distillation_loss
        other = model(**{k: v for k, v in batch.items() if k != "labels"}, teacher_logits=torch.randn_like(logits)).distillation_loss
    assert same.abs().max() < 1e-5 and other.sum() > 0


def test_pair_bilinear_equals_nn_bilinear():
    from hf_docre.layers_docre import PairBilinear

    torch.manual_seed(0)
    ours = PairBilinear(6, 5, 4)
    reference = nn.Bilinear(6, 5, 4)
    reference.load_state_dict(ours.state_dict())
    x1, x2 = torch.randn(7, 6, requires_grad=True), torch.randn(7, 5, requires_grad=True)
    assert torch.allclose(ours(x1, x2), reference(x1, x2), atol=1e-6)
    grads = torch.autograd.grad(ours(x1, x2).square().sum(), [x1, x2, ours.weight])
    expected = torch.autograd.grad(reference(x1, x2).square().sum(), [x1, x2, reference.weight])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, expected))
