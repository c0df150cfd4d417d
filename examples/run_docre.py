#!/usr/bin/env python
"""Train, evaluate and predict with a DocRE model and the stock `transformers.Trainer`.

A new model from any encoder:

    python examples/run_docre.py --model_name_or_path roberta-base --relations_file rel_info.json \\
        --dataset_config redocred --do_train --do_eval --do_predict --output_dir atlop-roberta \\
        --num_train_epochs 30 --per_device_train_batch_size 4 --learning_rate 5e-5 --head_learning_rate 1e-4

Other methods: `--method bert-baseline | two-step | kd-docre` (options such as `--loss` or `--focal_gamma` override
the method's preset). Knowledge distillation (KD-DocRE): train a teacher, then train the student on distantly
supervised data with `--teacher_model_name_or_path teacher --train_split train_distant` (the teacher's logits are
stored under `--teacher_logits_dir`, resumably), then fine-tune it on the annotated data with
`--model_name_or_path student`.

Local DocRED-format files instead of a builder config: `--train_file`, `--validation_file`, `--test_file`
(`--validation_holdout N` keeps the last N training documents for evaluation). Continue training a saved model:
`--model_name_or_path path/to/saved`. Runs unchanged under `torchrun --nproc_per_node=N`.

Writes to `--output_dir`: the model (safetensors, config, tokenizer, code, pipeline), `eval_results.json`,
`predict_results.json` (when the test split has labels), and the leaderboard submission `result.json` / `result.zip`.
"""

import json
import logging
import os
import sys
from dataclasses import dataclass, field

import transformers
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from hf_docre import DocREDataCollator, DocREFeaturizer, DocREModel
from hf_docre.data import joined_training_documents, load_docred, write_submission
from hf_docre.model_card import DocREModelCardCallback, DocREModelCardData, push_to_hub, save_with_card
from hf_docre.distillation import write_teacher_logits
from hf_docre.training import DocRELoss, DocREMetrics, optimizer_cls_and_kwargs, predictions_to_official, tune_threshold

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "An encoder (Hub id or folder) for a new model, or a saved DocRE model."})
    relations_file: str | None = field(default=None, metadata={"help": "rel_info.json-style {code: name} map (new models)."})
    head_learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate of the head; --learning_rate is the encoder's."})
    method: str = field(default="atlop", metadata={"help": "atlop, bert-baseline, two-step or kd-docre (new models). The options "
                                                            "below override the method's preset when given."})
    loss: str | None = field(default=None, metadata={"help": "atl (adaptive thresholding), bce or afl (adaptive focal)."})
    mention_pooling: str | None = field(default=None)
    use_context_pooling: bool | None = field(default=None)
    emb_size: int | None = field(default=None)
    block_size: int | None = field(default=None)
    max_relations_per_pair: int | None = field(default=None)
    window_stride: int | None = field(default=None)
    focal_gamma: float | None = field(default=None, metadata={"help": "Adaptive focal loss gamma (paper 0.5)."})
    focal_positive_weight: str | None = field(default=None, metadata={"help": "paper ((1-P)^gamma) or released_code (1 + (1-P)^gamma)."})
    negative_sampling_ratio: float | None = field(default=None, metadata={"help": "Two-step: NA pairs per related pair in step 1 (3)."})
    two_step_shared_encoder: bool | None = field(default=None)
    distillation_loss: str | None = field(default=None, metadata={"help": "mse (paper) or kl."})
    tune_threshold: bool = field(default=True, metadata={"help": "BCE and two-step heads: after training, set the global threshold "
                                                                 "that maximises F1 on the evaluation data (as the papers do on dev)."})
    teacher_model_name_or_path: str | None = field(default=None, metadata={"help": "Knowledge distillation (KD-DocRE): a trained "
                                                                                   "teacher whose logits on the training data the student learns from."})
    teacher_logits_dir: str | None = field(default=None, metadata={"help": "Where the teacher's logits are stored (resumable); "
                                                                           "default: <output_dir>/teacher_logits."})


@dataclass
class DataArguments:
    dataset_config: str = field(default="json", metadata={"help": "Builder config: docred, redocred, cdr, gda, json."})
    train_file: str | None = field(default=None)
    validation_file: str | None = field(default=None)
    test_file: str | None = field(default=None)
    train_split: str = field(default="train", metadata={"help": "docred: train_annotated; redocred: train."})
    validation_split: str = field(default="dev")
    test_split: str = field(default="test")
    validation_holdout: int = field(default=0, metadata={"help": "Use the last N training documents as evaluation data."})
    max_train_documents: int | None = field(default=None)
    max_eval_documents: int | None = field(default=None)
    max_predict_documents: int | None = field(default=None)
    validation: str = field(default="strict", metadata={"help": "strict or lenient document validation."})
    dataset_name: str | None = field(default=None, metadata={"help": "Dataset name for the model card (default: the config)."})
    dataset_id: str | None = field(default=None, metadata={"help": "Hub dataset id for the model card metadata."})
    base_model_id: str | None = field(default=None, metadata={"help": "Hub id of the encoder for the model card, when "
                                                                     "--model_name_or_path is a local folder."})
    cache_dir: str | None = field(default=None)
    joined_train_documents: int = field(default=0, metadata={"help": "Add this many training documents, each made of 2 to "
                                                                     "--join_max_documents random training documents joined (pairs across "
                                                                     "them are NA), so the model sees unrelated texts in one window (long documents)."})
    join_max_documents: int = field(default=4, metadata={"help": "At most this many documents per joined training document."})


def load_splits(data_args):
    files = {}
    for split, path in ((data_args.train_split, data_args.train_file), (data_args.validation_split, data_args.validation_file), (data_args.test_split, data_args.test_file)):
        if path:
            files[split] = path
    corpus = load_docred(data_args.dataset_config, data_files=files or None, cache_dir=data_args.cache_dir, validation=data_args.validation)
    documents = {split: [dict(row) for row in corpus[split]] for split in corpus}
    if data_args.validation_holdout:
        train = documents[data_args.train_split]
        documents[data_args.train_split] = train[: -data_args.validation_holdout]
        documents[data_args.validation_split] = train[-data_args.validation_holdout :]
    limits = {data_args.train_split: data_args.max_train_documents, data_args.validation_split: data_args.max_eval_documents, data_args.test_split: data_args.max_predict_documents}
    return {split: docs[: limits.get(split)] if limits.get(split) else docs for split, docs in documents.items()}


def build_model(model_args):
    path = model_args.model_name_or_path
    config_file = os.path.join(path, "config.json")
    if os.path.isfile(config_file) and json.load(open(config_file)).get("model_type") == "docre":
        return DocREModel.from_pretrained(path)
    if not model_args.relations_file:
        raise ValueError("A new model needs --relations_file (a rel_info.json-style {code: name} map).")
    relations = json.load(open(model_args.relations_file))
    names = ("loss", "mention_pooling", "use_context_pooling", "emb_size", "block_size", "max_relations_per_pair",
             "window_stride", "focal_gamma", "focal_positive_weight", "negative_sampling_ratio", "two_step_shared_encoder",
             "distillation_loss")
    options = {name: getattr(model_args, name) for name in names if getattr(model_args, name) is not None}
    return DocREModel.from_encoder(path, relations=relations, method=model_args.method, **options)


def whole_run_loss(checkpoint, state, resumed_loss):
    """The Trainer's `train_loss` after a resume covers only the steps run since; this is the mean over the whole run:
    the steps before the checkpoint from its logged losses (each logged loss is the mean of the steps since the
    previous log; steps after the last log before the checkpoint count at that last logged value), and the rest
    from `resumed_loss`."""
    with open(os.path.join(checkpoint, "trainer_state.json")) as f:
        before = json.load(f)
    resume_step = before["global_step"]
    total, previous = 0.0, 0
    last_loss = None
    for entry in before.get("log_history", []):
        if "loss" in entry and entry["step"] <= resume_step:
            total += entry["loss"] * (entry["step"] - previous)
            previous, last_loss = entry["step"], entry["loss"]
    if last_loss is None:
        return resumed_loss  # nothing logged before the checkpoint: only the resumed part is known
    total += last_loss * (resume_step - previous)
    return (total + resumed_loss * (state.global_step - resume_step)) / max(state.global_step, 1)


def main():
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(os.path.abspath(sys.argv[1]))
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO if training_args.should_log else logging.WARN)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    training_args.label_names = ["labels"]
    logger.warning(
        "Process rank: %s, world size: %s, device: %s, distributed training: %s",
        training_args.process_index, training_args.world_size, training_args.device,
        training_args.parallel_mode.value == "distributed",
    )
    set_seed(training_args.seed)

    documents = load_splits(data_args)
    train_documents = documents.get(data_args.train_split)  # the annotated facts (Ign-F1), without joined copies
    if data_args.joined_train_documents and train_documents:
        joined = joined_training_documents(train_documents, data_args.joined_train_documents, data_args.join_max_documents, training_args.seed)
        documents[data_args.train_split] = train_documents + joined
        logger.info("Added %d joined training documents (2 to %d documents each)", len(joined), data_args.join_max_documents)
    model = build_model(model_args)
    featurizer = DocREFeaturizer.from_model(model)
    features = {split: featurizer.featurize(docs) for split, docs in documents.items()}
    eval_split = data_args.validation_split
    train_features = features.get(data_args.train_split)
    if model_args.teacher_model_name_or_path and training_args.do_train:
        # Knowledge distillation: the teacher's logits on the training documents, computed once (by the main
        # process; resumable shard by shard) and read from disk by every process.
        folder = model_args.teacher_logits_dir or os.path.join(training_args.output_dir, "teacher_logits")
        with training_args.main_process_first(desc="teacher logits"):
            teacher = DocREModel.from_pretrained(model_args.teacher_model_name_or_path).to(training_args.device)
            train_features = write_teacher_logits(teacher, train_features, folder, batch_size=training_args.per_device_eval_batch_size)
            del teacher
        logger.info("Distilling from %s: %d training documents with teacher logits in %s", model_args.teacher_model_name_or_path, len(train_features), folder)

    # Our push writes the whole folder and the card; the stock push would overwrite README.md.
    push, training_args.push_to_hub = training_args.push_to_hub, False
    card = DocREModelCardData(
        repo_id=training_args.hub_model_id or os.path.basename(os.path.normpath(training_args.output_dir)),
        base_model=data_args.base_model_id or (model_args.model_name_or_path if not os.path.isdir(model_args.model_name_or_path) else None),
        datasets=[data_args.dataset_id] if data_args.dataset_id else [],
        dataset_name=data_args.dataset_name or (
            data_args.dataset_config if data_args.dataset_config != "json"
            else ", ".join(os.path.basename(f) for f in (data_args.train_file, data_args.validation_file) if f)),
        eval_split=f"{data_args.validation_holdout} held-out training documents" if data_args.validation_holdout else eval_split,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        data_collator=DocREDataCollator.from_model(model),
        train_dataset=train_features if training_args.do_train else None,
        eval_dataset=features.get(eval_split) if training_args.do_eval else None,
        compute_loss_func=DocRELoss.from_model(model),
        optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(model, training_args.learning_rate, model_args.head_learning_rate, training_args.weight_decay),
        compute_metrics=DocREMetrics(model, features[eval_split], documents[eval_split], train_documents) if eval_split in features else None,
        preprocess_logits_for_metrics=DocREMetrics.preprocess_logits(model),
        callbacks=[DocREModelCardCallback(card)],
    )

    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint
        if checkpoint is None and os.path.isdir(training_args.output_dir):
            # As transformers' examples: a rerun continues from the last checkpoint instead of overwriting it.
            checkpoint = get_last_checkpoint(training_args.output_dir)
            if checkpoint is not None:
                logger.info("Checkpoint found: resuming training from %s (pass a new --output_dir to start over)", checkpoint)
        result = trainer.train(resume_from_checkpoint=checkpoint)
        if checkpoint is not None:
            result.metrics["train_loss"] = whole_run_loss(checkpoint, trainer.state, result.metrics["train_loss"])
        if model_args.tune_threshold and model.config.decoding != "threshold_class" and eval_split in features:
            threshold, f1 = tune_threshold(model, features[eval_split], DocREDataCollator.from_model(model), training_args.per_device_eval_batch_size)
            logger.info("Global threshold tuned on %s: %.1f (pair-relation F1 %.4f)", eval_split, threshold, f1)
        trainer.save_model()  # DocREModel.save_pretrained: safetensors, config, code, pipeline, tokenizer
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()

    if training_args.do_eval:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    if training_args.do_predict:
        split = data_args.test_split
        test_features = features[split]
        has_labels = all(d.get("labels") is not None for d in documents[split])
        if not has_labels:
            test_features = [{k: v for k, v in f.items() if k != "labels"} for f in test_features]
        trainer.compute_metrics = DocREMetrics(model, test_features, documents[split], train_documents) if has_labels else None
        output = trainer.predict(test_features, metric_key_prefix="predict")
        if has_labels:
            trainer.log_metrics("predict", output.metrics)
            trainer.save_metrics("predict", output.metrics)
        if trainer.is_world_process_zero():
            records = predictions_to_official(output.predictions, test_features, model.config.id2label)
            json_path, zip_path = write_submission(records, training_args.output_dir)
            logger.info("Wrote %d predicted relations to %s and %s", len(records), json_path, zip_path)

    if training_args.do_train and trainer.is_world_process_zero():
        save_with_card(model, training_args.output_dir, card)  # README.md with the F1 / Ign-F1 measured above
        if push:
            push_to_hub(model, training_args.hub_model_id, card, token=training_args.hub_token)


if __name__ == "__main__":
    main()
