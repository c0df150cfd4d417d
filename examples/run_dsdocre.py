#!/usr/bin/env python
"""DSDocRE (Xiao et al. 2020): pre-denoising ranker -> pair scores -> pre-training on distant data, each stage a
stock-Trainer run or a batched pass, resumable; fine-tuning is then `run_docre.py --method dsdocre`.

    python examples/run_dsdocre.py --model_name_or_path bert-base-uncased --relations_file rel_info.json \\
        --train_file train_annotated.json --distant_file train_distant.json --validation_file dev.json \\
        --test_file test.json --output_dir dsdocre --stage all
    python examples/run_docre.py --model_name_or_path dsdocre/pretrain --candidate_pairs_dir dsdocre/candidates \\
        --train_file train_annotated.json --validation_file dev.json --do_train --do_eval --output_dir dsdocre/finetuned

Stages (`--stage ranker|score|pretrain|all`); a stage whose output exists is skipped, and scoring resumes shard by
shard:

- `ranker` -> `<output_dir>/ranker`: the relation-detection scorer (Eq. 3) trained on the annotated documents, in
  groups of one related pair and `ranker_negatives` NA pairs (paper recipe: lr 3e-5, batch 4 x 8, constant lr);
- `score` -> `<output_dir>/scores/<split>`: the ranker's top pairs of every document; `<output_dir>/candidates/<split>.json`:
  the top min(2 N_entities, 60) pairs of each annotated / evaluation document, which `run_docre.py
  --candidate_pairs_dir` scores (other pairs are predicted NA and count as misses);
- `pretrain` -> `<output_dir>/pretrain`: `DocREForDenoisingPreTraining` on pairs of distant documents whose trusted
  labels are the ranker's top `trusted_pairs` (paper 20, released code 30); the folder loads as the fine-tuning
  model's backbone.
"""

import json
import logging
import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed

from hf_docre import DocREFeaturizer, DocREForDenoisingPreTraining
from hf_docre.data import load_docred
from hf_docre.denoising import (
    DenoisingPreTrainingCollator,
    DocumentPairDataset,
    RankerCollator,
    build_fact_index,
    load_pair_scores,
    select_candidate_pairs,
    trusted_pairs,
    write_pair_scores,
)

logger = logging.getLogger(__name__)


@dataclass
class DSDocREArguments:
    model_name_or_path: str = field(metadata={"help": "The encoder (Hub id or folder) the ranker and pre-training start from."})
    relations_file: str = field(metadata={"help": "rel_info.json-style {code: name} map."})
    output_dir: str = field(metadata={"help": "Folder of every stage's output."})
    train_file: str = field(metadata={"help": "Annotated DocRED-format documents (ranker training; fine-tuning candidates)."})
    distant_file: str = field(metadata={"help": "Distantly supervised DocRED-format documents (pre-training)."})
    validation_file: str | None = field(default=None, metadata={"help": "Evaluation documents to compute candidate pairs for."})
    test_file: str | None = field(default=None, metadata={"help": "Test documents to compute candidate pairs for."})
    stage: str = field(default="all", metadata={"help": "ranker, score, pretrain or all."})
    config_overrides: str | None = field(default=None, metadata={"help": "DocREConfig options as key=value pairs, e.g. "
                                                                         "'alignment_distance=square,max_pooled_mentions=3'."})
    ranker_epochs: float = field(default=4, metadata={"help": "Ranker epochs (the released code's checkpoint: 4)."})
    ranker_negatives: int = field(default=5, metadata={"help": "NA pairs per related pair in a ranker group."})
    trusted_pairs: int = field(default=20, metadata={"help": "k_d: a distant label is trusted when its pair is among "
                                                             "the ranker's top k_d (paper 20, released code 30)."})
    candidates_per_entity: int = field(default=2, metadata={"help": "Candidate pairs per entity for fine-tuning/evaluation."})
    candidates_cap: int = field(default=60, metadata={"help": "At most this many candidate pairs (released code: 60)."})
    pretrain_steps: int = field(default=16000, metadata={"help": "Optimiser steps of pre-training (released code: ~16k)."})
    pretrain_batch_size: int = field(default=2, metadata={"help": "Document pairs per device and micro-batch."})
    gradient_accumulation_steps: int = field(default=8, metadata={"help": "Micro-batches per optimiser step (code: 8)."})
    learning_rate: float = field(default=3e-5, metadata={"help": "Ranker and pre-training learning rate (paper: 3e-5)."})
    blank_probability: float = field(default=0.2, metadata={"help": "alpha: probability that an entity's mentions are [BLANK]ed."})
    same_fact_probability: float = field(default=0.6, metadata={"help": "Share of document pairs drawn through a shared fact."})
    min_entities: int = field(default=5, metadata={"help": "Distant documents with fewer entities are not used."})
    score_batch_size: int = field(default=8, metadata={"help": "Documents per ranker call when scoring."})
    seed: int = field(default=42, metadata={"help": "Seed of training and sampling."})
    use_cpu: bool = field(default=False, metadata={"help": "Run on CPU even where a GPU is available."})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision for the Trainer stages."})


def read_documents(path):
    return [dict(row) for row in load_docred("json", data_files=path, split="train")]


def trainer_arguments(args, folder, **overrides):
    return TrainingArguments(
        output_dir=folder, learning_rate=args.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, adam_epsilon=1e-6, max_grad_norm=1.0, gradient_accumulation_steps=args.gradient_accumulation_steps,
        remove_unused_columns=False, save_strategy="no", report_to="none", logging_steps=10, seed=args.seed,
        use_cpu=args.use_cpu, bf16=args.bf16, **overrides,
    )


def new_model(args, tasks=None):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_docre import parse_config_overrides

    options = parse_config_overrides(args.config_overrides)
    if tasks is not None:
        options["pretraining_tasks"] = tasks
    relations = json.load(open(args.relations_file))
    return DocREForDenoisingPreTraining.from_encoder(args.model_name_or_path, relations=relations, method="dsdocre", **options)


def stage_ranker(args, annotated):
    folder = os.path.join(args.output_dir, "ranker")
    if os.path.exists(os.path.join(folder, "model.safetensors")):
        logger.info("Ranker found in %s: skipped", folder)
        return
    ranker = new_model(args, tasks=["relation_detection"])
    documents = [d for d in annotated if d.get("labels")]  # documents without labels cannot make a group
    collator = RankerCollator(DocREFeaturizer.from_model(ranker), negatives=args.ranker_negatives, seed=args.seed)
    training = trainer_arguments(args, folder, num_train_epochs=args.ranker_epochs, per_device_train_batch_size=4)
    Trainer(model=ranker, args=training, train_dataset=documents, data_collator=collator).train()
    ranker.save_pretrained(folder)


def stage_score(args, splits):
    ranker = DocREForDenoisingPreTraining.from_pretrained(os.path.join(args.output_dir, "ranker"))
    if not args.use_cpu:
        import torch

        if torch.cuda.is_available():
            ranker = ranker.to("cuda")
    featurizer = DocREFeaturizer.from_model(ranker)
    os.makedirs(os.path.join(args.output_dir, "candidates"), exist_ok=True)
    for split, documents in splits.items():
        features = featurizer.featurize(documents, with_labels=False)
        folder = write_pair_scores(ranker, features, os.path.join(args.output_dir, "scores", split), batch_size=args.score_batch_size)
        rows = load_pair_scores(folder)
        if split != "distant":
            candidates = select_candidate_pairs(rows, [len(d["vertexSet"]) for d in documents],
                                                args.candidates_per_entity, args.candidates_cap)
            with open(os.path.join(args.output_dir, "candidates", f"{split}.json"), "w") as f:
                json.dump(candidates, f)
        logger.info("Scored %d %s documents", len(documents), split)


def stage_pretrain(args, distant):
    folder = os.path.join(args.output_dir, "pretrain")
    if os.path.exists(os.path.join(folder, "model.safetensors")):
        logger.info("Pre-trained model found in %s: skipped", folder)
        return
    rows = load_pair_scores(os.path.join(args.output_dir, "scores", "distant"))
    trusted = trusted_pairs(rows, args.trusted_pairs)
    index = build_fact_index(distant, trusted)
    model = new_model(args)
    steps = args.pretrain_steps * args.pretrain_batch_size * args.gradient_accumulation_steps
    dataset = DocumentPairDataset(distant, trusted, index, num_samples=steps, same_fact_probability=args.same_fact_probability,
                                  min_entities=args.min_entities, seed=args.seed)
    collator = DenoisingPreTrainingCollator(DocREFeaturizer.from_model(model), distant, trusted, model.config,
                                            blank_probability=args.blank_probability)
    logger.info("Pre-training on %d distant documents, %d shared-fact keys", len(dataset.eligible), len(index))
    training = trainer_arguments(args, folder, max_steps=args.pretrain_steps, per_device_train_batch_size=args.pretrain_batch_size)
    trainer = Trainer(model=model, args=training, train_dataset=dataset, data_collator=collator)
    result = trainer.train()
    trainer.save_metrics("pretrain", result.metrics)
    model.save_pretrained(folder)


def main():
    (args,) = HfArgumentParser(DSDocREArguments).parse_args_into_dataclasses()
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    if args.stage not in ("ranker", "score", "pretrain", "all"):
        raise ValueError(f"--stage must be ranker, score, pretrain or all, got {args.stage!r}")
    for name in ("relations_file", "train_file", "distant_file", "validation_file", "test_file"):
        path = getattr(args, name)
        if path and not os.path.isfile(path):
            raise ValueError(f"--{name} {path} does not exist")
    set_seed(args.seed)
    annotated = read_documents(args.train_file)
    if args.stage in ("ranker", "all"):
        stage_ranker(args, annotated)
    if args.stage in ("score", "all"):
        splits = {"train": annotated, "distant": read_documents(args.distant_file)}
        for split, path in (("dev", args.validation_file), ("test", args.test_file)):
            if path:
                splits[split] = read_documents(path)
        stage_score(args, splits)
    if args.stage in ("pretrain", "all"):
        # Scores are by position in the distant file: every document is kept, the dataset skips the small ones.
        stage_pretrain(args, read_documents(args.distant_file))


if __name__ == "__main__":
    main()
