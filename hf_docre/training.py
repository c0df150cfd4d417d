"""Helpers for training DocRE models with the stock `transformers.Trainer` (no subclass).

    from hf_docre.training import DocRELoss, optimizer_cls_and_kwargs, DocREMetrics

    args = TrainingArguments(..., label_names=["labels"], remove_unused_columns=False)
    trainer = Trainer(
        model=model, args=args, data_collator=DocREDataCollator.from_model(model),
        train_dataset=train_features, eval_dataset=dev_features,
        compute_loss_func=DocRELoss.from_model(model),
        optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(model, encoder_lr=5e-5, head_lr=1e-4),
        compute_metrics=DocREMetrics(model, dev_features, dev_documents, train_documents),
        preprocess_logits_for_metrics=DocREMetrics.preprocess_logits(model),
    )
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .decoding_docre import decode_relations
from .losses_docre import labelled_pair_loss, reduce_pair_loss
from .metrics import score_docred
from .processing_docre import feature_pairs


class DocRELoss:
    """Loss for `Trainer(compute_loss_func=...)`, for code that passes one: the model computes the same loss itself
    (`labels` and the Trainer's `num_items_in_batch` go to its forward), so a Trainer needs none. Both use
    `losses_docre.labelled_pair_loss` and `reduce_pair_loss`: the mean loss over real pairs, right under gradient
    accumulation and DDP. Pairs the model left unscored (`scored_pairs` = 0) count with a loss of 0; a `pair_loss_weight`
    input (returned in the model's output) scales each pair's loss as the model's forward does.
    """

    def __init__(self, config, model=None):
        self.config = config
        self.model = model  # read for `training` (two-step samples NA pairs in training only)

    @classmethod
    def from_model(cls, model):
        return cls(model.config, model)

    def __call__(self, outputs, labels, num_items_in_batch=None):
        get = (lambda name: outputs.get(name)) if isinstance(outputs, dict) else (lambda name: getattr(outputs, name))
        logits, scored, distillation = get("logits"), get("scored_pairs"), get("distillation_loss")
        keep = labels[..., 0] != -100
        if scored is not None:
            keep = keep & (scored > 0)
        training = self.model.training if self.model is not None else True
        head = getattr(self.model, "head", None)
        per_pair, _ = labelled_pair_loss(self.config, logits[keep], labels[keep], training,
                                         loss_fn=head.relation_loss if head is not None else None)
        pair_loss = per_pair.new_zeros(keep.shape).index_put(keep.nonzero(as_tuple=True), per_pair)
        if distillation is not None:  # the model computed it from the `teacher_logits` input
            pair_loss = pair_loss + distillation * keep.to(distillation.dtype)
        pair_loss_weight = get("pair_loss_weight")
        if pair_loss_weight is not None:  # the model's `pair_loss_weight` input, returned in its output
            pair_loss = pair_loss * pair_loss_weight.to(pair_loss.dtype)
        loss = reduce_pair_loss(pair_loss, labels, num_items_in_batch)
        head_losses = get("head_losses")
        if head_losses:  # the pair head's own terms (DREEAM's evidence loss), weighted as the model's forward does
            share = 1.0 if num_items_in_batch is None else (labels[..., 0] != -100).sum() * labels.shape[-1] / num_items_in_batch
            loss = loss + share * sum(head_losses.values())
        return loss


def param_groups(model, encoder_lr: float = 5e-5, head_lr: float = 1e-4, weight_decay: float = 0.0) -> list[dict]:
    """Two parameter groups with the papers' learning-rate split: the encoder(s) and everything else (the head).
    A two-step model's step-1 encoder counts as an encoder."""
    encoders = model.encoder_modules()
    encoder_ids = {id(p) for encoder in encoders for p in encoder.parameters()}
    encoder = [p for p in model.parameters() if p.requires_grad and id(p) in encoder_ids]
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in encoder_ids]
    return [
        {"params": encoder, "lr": encoder_lr, "weight_decay": weight_decay},
        {"params": head, "lr": head_lr, "weight_decay": weight_decay},
    ]


def optimizer_cls_and_kwargs(
    model,
    encoder_lr: float = 5e-5,
    head_lr: float = 1e-4,
    weight_decay: float = 0.0,
    eps: float = 1e-6,
    optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW,
    fused: bool | None = None,
) -> tuple[type[torch.optim.Optimizer], dict]:
    """`(optimizer class, kwargs)` for `Trainer(optimizer_cls_and_kwargs=...)`: AdamW with encoder/head groups
    (ATLOP: 5e-5 / 1e-4, eps 1e-6). The Trainer's scheduler scales each group's own learning rate.

    `fused` (default: on for `torch.optim.AdamW`, as the Trainer's own default `adamw_torch_fused`) runs the update in
    one kernel: on CPU 4x faster than the per-tensor-list update, about 7% of a MiniLM training step."""
    kwargs = {"params": param_groups(model, encoder_lr, head_lr, weight_decay), "eps": eps}
    if fused is None:
        fused = optimizer_cls is torch.optim.AdamW
    if fused:
        kwargs["fused"] = True
    return optimizer_cls, kwargs


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX512-BF16 or AMX), where `--bf16` autocast pays off
    (measured: a MiniLM training run 1.19x faster, the group bilinear 2x). Elsewhere bf16 on CPU is emulated, slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def predictions_to_official(predicted, features: Sequence[dict], id2label: dict[int, str]) -> list[dict]:
    """[N, P, R] 0/1 predictions (row i = features[i]) -> official `{title, h_idx, t_idx, r}` records (no NA). Given
    `(predictions, evidence)` with evidence [N, P, S] 0/1 (DREEAM), each record also has its `evidence` sentences."""
    evidence = None
    if isinstance(predicted, (tuple, list)):
        predicted, evidence = predicted[0], (predicted[1] if len(predicted) > 1 else None)
    predicted = np.asarray(predicted)
    evidence = None if evidence is None else np.asarray(evidence)
    records = []
    for i, (feature, rows) in enumerate(zip(features, predicted)):
        pairs = feature_pairs(feature).tolist()
        pair_ids, relation_ids = np.nonzero(rows[: len(pairs), 1:] == 1)
        for p, r in zip(pair_ids.tolist(), relation_ids.tolist()):
            h, t = pairs[p]
            record = {"title": feature["title"], "h_idx": int(h), "t_idx": int(t), "r": id2label[r + 1]}
            if evidence is not None:
                record["evidence"] = np.nonzero(evidence[i, p] == 1)[0].tolist()
            records.append(record)
    return records


class DocREMetrics:
    """`compute_metrics` for the Trainer: F1, Ign-F1 (and the other metric fields) on the evaluation documents.

    Args:
        model: gives the decoding settings and labels.
        features: the evaluation features, in dataset order (`title`, `mention_index` and any `pair_index`).
        documents: the gold evaluation documents.
        train_documents: the training documents, for Ign-F1.
    """

    def __init__(self, model, features, documents, train_documents=None, **score_kwargs):
        config = model.config
        self.id2label = dict(config.id2label)
        self.features = [{"title": f["title"], "pair_index": feature_pairs(f)} for f in features]
        self.documents = documents
        self.train_documents = train_documents
        self.score_kwargs = score_kwargs

    @staticmethod
    def preprocess_logits(model, max_sentences: int | None = None):
        """For `Trainer(preprocess_logits_for_metrics=...)`: decode in the evaluation loop, keep int8 0/1. A model that
        retrieves evidence (DREEAM) also gives [B, P, S] 0/1 evidence, padded to `max_sentences` sentences (the most
        any evaluated document has: the Trainer concatenates batches and pads only the pair dimension)."""
        config = model.config

        def decode(logits, labels):
            evidence = None
            if isinstance(logits, (tuple, list)):
                logits, evidence = logits[0], (logits[1] if len(logits) > 1 else None)
            decoded = decode_relations(
                logits.float(), config.decoding, config.global_threshold, config.max_relations_per_pair
            ).to(torch.int8)
            threshold = getattr(config, "evidence_threshold", None)
            if evidence is None or threshold is None:
                return decoded
            evidence = (evidence > threshold).to(torch.int8)  # DREEAM: each pair's evidence sentences
            width = max_sentences or 0
            if evidence.shape[-1] > width:
                raise ValueError(f"DocREMetrics.preprocess_logits: a document has {evidence.shape[-1]} sentences; pass "
                                 f"max_sentences >= that (got {max_sentences})")
            return decoded, torch.nn.functional.pad(evidence, (0, width - evidence.shape[-1]))

        return decode

    def __call__(self, evaluation):
        records = predictions_to_official(evaluation.predictions, self.features, self.id2label)
        scores = score_docred(records, self.documents, self.train_documents, **self.score_kwargs)
        return {key: value for key, value in scores.items() if value is not None}


def tune_threshold(model, features: Sequence[dict], collator, batch_size: int = 8) -> tuple[float, float]:
    """Set `model.config.global_threshold` (BCE and two-step heads) to the value that maximises pair-relation F1
    on `features` (the papers tune it on dev). Batched; only the real pairs' logits are kept. Returns
    `(threshold, f1)`."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    try:
        for start in range(0, len(features), batch_size):
            batch = collator([features[i] for i in range(start, min(len(features), start + batch_size))])
            gold = batch.pop("labels")
            with torch.inference_mode():
                output = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
            real = batch["pair_index"][..., 0] >= 0
            logits.append(output[real])
            labels.append(gold[real])
    finally:
        model.train(was_training)
    return model.tune_global_threshold(torch.cat(logits), torch.cat(labels))
