import pytest
import torch
from conftest import SMALL_HEAD, short_document
from datasets import Dataset
from torch import nn
from transformers import Trainer, TrainingArguments

from hf_docre import DocREDataCollator, DocREFeaturizer, DocREModel
from hf_docre.training import DocRELoss, DocREMetrics, optimizer_cls_and_kwargs, param_groups


@pytest.fixture()
def setup(encoder_dirs, relation_info, redocred_documents):
    torch.manual_seed(0)
    model = DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), **SMALL_HEAD)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0  # deterministic steps, so accumulated and whole-batch gradients can be compared
    documents = [short_document(d, 3) for d in redocred_documents[40:48] if short_document(d, 3)["labels"]][:4]
    features = DocREFeaturizer.from_model(model).featurize(documents)
    return model, documents, features, DocREDataCollator.from_model(model)


def test_loss_object_equals_model_loss_and_accumulates_correctly(setup):
    model, documents, features, collator = setup
    loss_fn = DocRELoss.from_model(model)
    whole = collator(features)
    expected = model(**whole).loss
    outputs = model(**{k: v for k, v in whole.items() if k != "labels"})
    assert torch.allclose(loss_fn(outputs, whole["labels"]), expected, atol=1e-6)
    # Two micro-batches, each normalised by the items of the whole step (as the Trainer passes them).
    parts = [collator(features[:1]), collator(features[1:])]
    num_items = sum((p["labels"] != -100).sum() for p in parts)
    accumulated = sum(loss_fn(model(**{k: v for k, v in p.items() if k != "labels"}), p["labels"], num_items) for p in parts)
    assert torch.allclose(accumulated, expected, atol=1e-5)


def _trainer(model, features, collator, tmp_path, batch_size, accumulation, steps, lr=1e-3, optimizer=torch.optim.SGD):
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
        max_steps=steps, learning_rate=lr, lr_scheduler_type="constant", label_names=["labels"], report_to=[],
        logging_steps=1, save_strategy="no", use_cpu=True, seed=0, dataloader_drop_last=False,
    )
    options = optimizer_cls_and_kwargs(model, encoder_lr=lr, head_lr=lr, optimizer_cls=optimizer)
    if optimizer is torch.optim.SGD:
        options[1].pop("eps")
    return Trainer(
        model=model, args=args, train_dataset=Dataset.from_list(features), data_collator=collator,
        compute_loss_func=DocRELoss.from_model(model), optimizer_cls_and_kwargs=options,
    )


def test_trainer_gradient_accumulation_matches_one_big_batch(setup, tmp_path):
    model, documents, features, collator = setup
    start = {k: v.clone() for k, v in model.state_dict().items()}
    _trainer(model, features, collator, tmp_path / "a", batch_size=4, accumulation=1, steps=1).train()
    whole = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(start)
    _trainer(model, features, collator, tmp_path / "b", batch_size=2, accumulation=2, steps=1).train()
    changed = 0
    for name, value in model.state_dict().items():
        assert torch.allclose(value, whole[name], atol=1e-6), name
        changed += not torch.equal(value, start[name])
    assert changed > 10


@pytest.mark.slow
def test_stock_trainer_loss_falls_and_reports_f1(setup, tmp_path):
    model, documents, features, collator = setup
    trainer = _trainer(model, features, collator, tmp_path, batch_size=2, accumulation=1, steps=30, lr=3e-3, optimizer=torch.optim.AdamW)
    trainer.compute_metrics = DocREMetrics(model, features, documents, train_documents=documents)
    trainer.preprocess_logits_for_metrics = DocREMetrics.preprocess_logits(model)
    trainer.eval_dataset = Dataset.from_list(features)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_f1"] <= 1.0 and "eval_ign_f1" in metrics and "eval_loss" in metrics


def test_param_groups_split_encoder_and_head(setup):
    model = setup[0]
    encoder, head = param_groups(model, encoder_lr=5e-5, head_lr=1e-4)
    assert encoder["lr"] == 5e-5 and head["lr"] == 1e-4
    assert len(encoder["params"]) == len(list(model.encoder.parameters()))
    assert {id(p) for p in head["params"]} == {id(p) for n, p in model.named_parameters() if not n.startswith("encoder.")}


def test_the_optimizer_is_fused_adamw_and_steps_like_the_unfused_one(setup, tmp_path):
    model, documents, features, collator = setup
    optimizer_cls, kwargs = optimizer_cls_and_kwargs(model)
    assert optimizer_cls is torch.optim.AdamW and kwargs["fused"] is True and kwargs["eps"] == 1e-6
    assert "fused" not in optimizer_cls_and_kwargs(model, optimizer_cls=torch.optim.SGD)[1]
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer(model, features, collator, tmp_path / "fused", batch_size=2, accumulation=1, steps=2, optimizer=torch.optim.AdamW)
    trainer.train()
    assert trainer.optimizer.defaults["fused"] is True
    fused = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(start)
    options = optimizer_cls_and_kwargs(model, encoder_lr=1e-3, head_lr=1e-3, fused=False)
    trainer = _trainer(model, features, collator, tmp_path / "unfused", batch_size=2, accumulation=1, steps=2, optimizer=torch.optim.AdamW)
    trainer.optimizer_cls_and_kwargs = options
    trainer.train()
    assert not trainer.optimizer.defaults.get("fused")
    changed = 0
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, fused[name], rtol=1e-5, atol=1e-6, msg=name)
        changed += not torch.equal(value, start[name])
    assert changed > 10


def test_joined_training_documents_are_drawn_afresh_each_epoch(setup, tmp_path):
    from hf_docre.data import JoinedTrainingCallback, JoinedTrainingFeatures

    model, documents, features, collator = setup
    featurizer = DocREFeaturizer.from_model(model)
    dataset = JoinedTrainingFeatures(features, documents, featurizer, count=3, max_documents=3, seed=5)
    assert len(dataset) == len(features) + 3 and dataset[0] is features[0]
    first = [dataset[i]["title"] for i in range(len(features), len(dataset))]
    assert all(" + " in title for title in first)
    again = JoinedTrainingFeatures(features, documents, featurizer, count=3, max_documents=3, seed=5)
    assert [again[-1 - i]["title"] for i in range(3)] == first[::-1]  # the draw depends on seed and epoch only
    draws = {}
    for epoch in range(4):
        dataset.set_epoch(epoch)
        draws[epoch] = [dataset[i]["title"] for i in range(len(features), len(dataset))]
    assert draws[0] == first and len({tuple(d) for d in draws.values()}) > 1

    # The stock Trainer, through the callback: each epoch trains on that epoch's draw.
    seen = {}
    dataset.set_epoch(0)

    class Recording(JoinedTrainingCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):
            super().on_epoch_begin(args, state, control, **kwargs)
            seen[int(state.epoch)] = [self.dataset[i]["title"] for i in range(len(features), len(self.dataset))]

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=3, learning_rate=1e-4,
                             report_to=[], save_strategy="no", use_cpu=True, seed=0, label_names=["labels"])
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                      compute_loss_func=DocRELoss.from_model(model), callbacks=[Recording(dataset)])
    trainer.train()
    assert seen == {0: draws[0], 1: draws[1], 2: draws[2]}


def test_cross_part_pairs_of_joined_documents_weigh_their_loss(setup):
    from hf_docre.data import JoinedTrainingFeatures, cross_part_pair_loss_weight, join_documents, joined_training_documents
    from hf_docre.processing_docre import feature_pairs

    model, documents, features, collator = setup
    model.train()
    featurizer = DocREFeaturizer.from_model(model)
    # The rows name exactly the pairs whose entities come from different sources.
    document, source = join_documents(documents[:3])
    rows = cross_part_pair_loss_weight(source, 4.0)
    pairs = feature_pairs(featurizer.featurize([document])[0])
    across = {p for p, (h, t) in enumerate(pairs) if source[h][0] != source[t][0]}
    assert {int(p) for p, _ in rows} == across and all(w == 4.0 for _, w in rows) and len(across) < len(pairs)
    assert cross_part_pair_loss_weight(source, 1.0) == []
    # The same draw with and without sources.
    drawn = joined_training_documents(documents, 3, 3, seed=2, with_sources=True)
    assert [d for d, _ in drawn] == joined_training_documents(documents, 3, 3, seed=2)

    dataset = JoinedTrainingFeatures(features, documents, featurizer, count=2, max_documents=3, seed=1, cross_pair_weight=4.0)
    joined = [dataset[len(features)], dataset[len(features) + 1]]
    assert all(f["pair_loss_weight"] for f in joined) and "pair_loss_weight" not in dataset[0]
    batch = collator([features[0], *joined])
    weight = batch["pair_loss_weight"]
    assert weight.shape == batch["labels"].shape[:2] and (weight[0] == 1).all() and (weight[1:] == 4).any()
    torch.manual_seed(0)
    unweighted = model(**{k: v for k, v in batch.items() if k != "pair_loss_weight"})
    torch.manual_seed(0)
    weighted = model(**batch)
    labelled = (batch["labels"][..., 0] != -100).sum()
    assert torch.allclose(weighted.pair_loss, unweighted.pair_loss * weight, atol=1e-6)
    assert torch.allclose(weighted.loss, (unweighted.pair_loss * weight).sum() / labelled, atol=1e-6)
    assert weighted.loss > unweighted.loss
    # The Trainer's external loss weighs the pairs alike (the weight comes back in the output).
    torch.manual_seed(0)
    outputs = model(**{k: v for k, v in batch.items() if k != "labels"})
    assert torch.allclose(DocRELoss.from_model(model)(outputs, batch["labels"]), weighted.loss, atol=1e-6)
    with pytest.raises(ValueError, match="cross_pair_weight"):
        JoinedTrainingFeatures(features, documents, featurizer, count=1, cross_pair_weight=-1)
