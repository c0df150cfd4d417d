#!/usr/bin/env python
"""Train, evaluate and predict with a DocRE model and the stock `transformers.Trainer`.

A new model from any encoder:

    python examples/run_docre.py --model_name_or_path roberta-base --relations_file rel_info.json \\
        --dataset_config redocred --do_train --do_eval --do_predict --output_dir atlop-roberta \\
        --num_train_epochs 30 --per_device_train_batch_size 4 --learning_rate 5e-5 --head_learning_rate 1e-4

Other methods: `--method bert-baseline | two-step | kd-docre`; any config option with `--config_overrides
"loss=afl,focal_gamma=0.3"`. Training options not given take the method's published recipe (`--training_recipe none`
for the Trainer's defaults). Knowledge distillation (KD-DocRE): train a teacher, then train the student on distantly
supervised data with `--teacher_model_name_or_path teacher --train_split train_distant` (the teacher's logits are
stored under `--teacher_logits_dir`, resumably), then fine-tune it on the annotated data with
`--model_name_or_path student`.

Local DocRED-format files instead of a builder config: `--train_file`, `--validation_file`, `--test_file`
(`--validation_holdout N` keeps the last N training documents for evaluation). Continue training a saved model:
`--model_name_or_path path/to/saved`. Runs unchanged under `torchrun --nproc_per_node=N`.

Writes to `--output_dir`: the model (safetensors, config, tokenizer, code, pipeline), `eval_results.json`,
`predict_results.json` (when the test split has labels), and the leaderboard submission `result.json` / `result.zip`.
"""

import inspect
import json
import logging
import os
import sys
from dataclasses import dataclass, field

import torch
import transformers
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from hf_docre import METHODS, DocREConfig, DocREDataCollator, DocREFeaturizer, DocREModel
from hf_docre.data import JoinedTrainingCallback, JoinedTrainingFeatures, joined_training_documents, load_docred, write_submission
from hf_docre.denoising import with_candidate_pairs
from hf_docre.distillation import write_teacher_logits
from hf_docre.metrics import score_docred
from hf_docre.model_card import DocREModelCardCallback, DocREModelCardData, push_to_hub, save_with_card
from hf_docre.training import DocREMetrics, cpu_has_native_bf16, optimizer_cls_and_kwargs, predictions_to_official, tune_threshold

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "An encoder (Hub id or folder) for a new model, or a saved DocRE model."})
    relations_file: str | None = field(default=None, metadata={"help": "rel_info.json-style {code: name} map (new models)."})
    method: str | None = field(default=None, metadata={"help": f"A published method ({', '.join(METHODS)}); default atlop for a new "
                                                              "model, the saved model's own otherwise. Sets the config preset and, "
                                                              "unless --training_recipe none, the paper's training recipe."})
    config_overrides: str | None = field(default=None, metadata={"help": "Any DocREConfig option as comma-separated key=value pairs, "
                                                                         "e.g. 'loss=afl,focal_gamma=0.3,window_stride=128' (values read "
                                                                         "as JSON: numbers, true/false, null; anything else is a string)."})
    encoder_attention_dropout: float | None = field(default=None, metadata={"help": "New models: the encoder's dropout on "
                                                                                    "attention probabilities (BERT: attention_probs_dropout_prob). "
                                                                                    "Default: the method recipe's (ATLOP-based methods: 0.0), else the "
                                                                                    "encoder's own."})
    encoder_config_overrides: str | None = field(default=None, metadata={"help": "New models: options of the encoder's own config, "
                                                                                 "as key=value pairs, e.g. 'attention_probs_dropout_prob=0.0'."})
    training_recipe: str = field(default="paper", metadata={"help": "paper: training options not given on the command line take the "
                                                                    "method's published values (see hf_docre.METHODS[...].recipe); none: "
                                                                    "the Trainer's defaults."})
    head_learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate of the head; --learning_rate is the encoder's."})
    tune_threshold: bool = field(default=True, metadata={"help": "BCE and two-step heads: after training, set the global threshold "
                                                                 "that maximises F1 on the evaluation data (as the papers do on dev)."})
    teacher_model_name_or_path: str | None = field(default=None, metadata={"help": "Knowledge distillation (KD-DocRE): a trained "
                                                                                   "teacher whose logits on the training data the student learns from."})
    teacher_logits_dir: str | None = field(default=None, metadata={"help": "Where the teacher's logits are stored (resumable); "
                                                                           "default: <output_dir>/teacher_logits."})
    transfer_relation_bilinear: bool = field(default=False, metadata={"help": "DSDocRE: starting from a pre-training folder, also "
                                                                               "take its relation bilinear for the head (the released "
                                                                               "code starts the head afresh)."})
    license: str | None = field(default=None, metadata={"help": "Licence of the trained model for its card (e.g. apache-2.0, mit); "
                                                                "mind the encoder's and the data's licences. Default: none written."})


@dataclass
class DataArguments:
    dataset_config: str = field(default="json", metadata={"help": "Builder config: docred, redocred, cdr, gda, json."})
    train_file: str | None = field(default=None, metadata={"help": "DocRED-format training documents (JSON list or JSON lines)."})
    validation_file: str | None = field(default=None, metadata={"help": "DocRED-format evaluation documents."})
    test_file: str | None = field(default=None, metadata={"help": "DocRED-format test documents (with or without labels)."})
    train_split: str = field(default="train", metadata={"help": "docred: train_annotated; redocred: train."})
    validation_split: str = field(default="dev", metadata={"help": "The split --do_eval scores."})
    test_split: str = field(default="test", metadata={"help": "The split --do_predict predicts (and scores when it has labels)."})
    validation_holdout: int = field(default=0, metadata={"help": "Use the last N training documents as evaluation data."})
    max_train_documents: int | None = field(default=None, metadata={"help": "Keep only the first N training documents."})
    max_eval_documents: int | None = field(default=None, metadata={"help": "Keep only the first N evaluation documents."})
    max_predict_documents: int | None = field(default=None, metadata={"help": "Keep only the first N test documents."})
    validation: str = field(default="strict", metadata={"help": "strict or lenient document validation."})
    dataset_name: str | None = field(default=None, metadata={"help": "Dataset name for the model card (default: the config)."})
    dataset_id: str | None = field(default=None, metadata={"help": "Hub dataset id for the model card metadata."})
    base_model_id: str | None = field(default=None, metadata={"help": "Hub id of the encoder for the model card, when "
                                                                     "--model_name_or_path is a local folder."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where the datasets builder caches the prepared data."})
    candidate_pairs_dir: str | None = field(default=None, metadata={"help": "DSDocRE: a folder with <split>.json, a list (one entry "
                                                                           "per document of that split's file) of the pairs to score "
                                                                           "(examples/run_dsdocre.py writes it). Other pairs are predicted NA "
                                                                           "and still count as misses."})
    predict_chunk_documents: int = field(default=1000, metadata={"help": "--do_predict runs this many documents at a time "
                                                                          "and appends their relations to "
                                                                          "<output_dir>/predictions.partial.jsonl as it goes."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Train into an --output_dir that already holds a "
                                                                        "finished model (it is replaced). Without it such a run "
                                                                        "stops before training; a folder with checkpoints resumes."})
    joined_train_documents: int = field(default=None, metadata={"help": "Add this many training documents, each made of 2 to "
                                                                        "--join_max_documents random training documents joined (pairs across "
                                                                        "them are NA), so the model sees unrelated texts in one window (long "
                                                                        "documents). Default: --joined_train_fraction of the training documents."})
    joined_train_fraction: float = field(default=0.0, metadata={"help": "Without --joined_train_documents: add this fraction of the "
                                                                        "number of training documents as joined ones. Default: the method "
                                                                        "recipe's (ATLOP: 0.5), else 0."})
    joined_draw: str = field(default="epoch", metadata={"help": "epoch: the joined training documents are drawn afresh every "
                                                                "epoch; once: drawn once for the whole run (needed with a teacher)."})
    join_max_documents: int = field(default=4, metadata={"help": "At most this many documents per joined training document."})
    joined_cross_pair_weight: float = field(default=1.0, metadata={"help": "Weight of the loss of the pairs across the parts of "
                                                                        "a joined training document (all NA); above 1 stresses "
                                                                        "that unrelated texts hold no relation (--joined_draw epoch)."})


def load_splits(data_args):
    files = {}
    for split, path in (
        (data_args.train_split, data_args.train_file),
        (data_args.validation_split, data_args.validation_file),
        (data_args.test_split, data_args.test_file),
    ):
        if path:
            files[split] = path
    corpus = load_docred(data_args.dataset_config, data_files=files or None, cache_dir=data_args.cache_dir, validation=data_args.validation)
    documents = {split: [dict(row) for row in corpus[split]] for split in corpus}
    if data_args.candidate_pairs_dir:
        for split, docs in documents.items():
            path = os.path.join(data_args.candidate_pairs_dir, f"{split}.json")
            if not os.path.isfile(path):
                raise ValueError(f"--candidate_pairs_dir: no {path} for split {split!r}")
            candidates = json.load(open(path))
            if len(candidates) != len(docs):
                raise ValueError(f"{path} has {len(candidates)} entries for {len(docs)} documents of split {split!r}")
            for document, pairs in zip(docs, candidates):
                document["candidate_pairs"] = pairs
    if data_args.validation_holdout:
        train = documents.get(data_args.train_split) or []
        if data_args.validation_holdout >= len(train):
            raise ValueError(f"--validation_holdout {data_args.validation_holdout}: the training split {data_args.train_split!r} "
                             f"has {len(train)} documents; hold out fewer so that some remain for training")
        documents[data_args.train_split] = train[: -data_args.validation_holdout]
        documents[data_args.validation_split] = train[-data_args.validation_holdout :]
    limits = {
        data_args.train_split: data_args.max_train_documents,
        data_args.validation_split: data_args.max_eval_documents,
        data_args.test_split: data_args.max_predict_documents,
    }
    return {split: docs[: limits.get(split)] if limits.get(split) else docs for split, docs in documents.items()}


def parse_config_overrides(text, flag="--config_overrides"):
    """'loss=afl,focal_gamma=0.3' -> {"loss": "afl", "focal_gamma": 0.3}, every key a `DocREConfig` option (for
    --encoder_config_overrides, any key: the encoder's config checks them)."""
    options = {}
    valid = None
    if flag == "--config_overrides":
        valid = set(inspect.signature(DocREConfig.__init__).parameters) - {"self", "kwargs", "encoder", "relations"}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{flag}: {item!r} is not key=value")
        if valid is not None and key not in valid:
            raise ValueError(f"--config_overrides: unknown DocREConfig option {key!r}; options: {', '.join(sorted(valid))}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = {"True": True, "False": False, "None": None}.get(value.strip(), value.strip())
    return options


def is_saved_docre_model(path):
    config_file = os.path.join(path, "config.json")
    return os.path.isfile(config_file) and json.load(open(config_file)).get("model_type") == "docre"


# The attribute that holds the dropout on attention probabilities, by encoder family.
ATTENTION_DROPOUT_OPTIONS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")


def planned_method(model_args):
    """The method the model will have, known before it is built (for its training recipe)."""
    overrides = parse_config_overrides(model_args.config_overrides)
    if is_saved_docre_model(model_args.model_name_or_path):
        saved = json.load(open(os.path.join(model_args.model_name_or_path, "config.json"))).get("method")
        return overrides.get("method") or saved or "atlop"
    return overrides.get("method") or model_args.method or "atlop"


def encoder_config_options(model_args):
    """--encoder_config_overrides, plus --encoder_attention_dropout under the encoder's own name for it."""
    from transformers import AutoConfig

    options = parse_config_overrides(model_args.encoder_config_overrides, "--encoder_config_overrides")
    if model_args.encoder_attention_dropout is not None and not any(key in options for key in ATTENTION_DROPOUT_OPTIONS):
        config = AutoConfig.from_pretrained(model_args.model_name_or_path)
        name = next((key for key in ATTENTION_DROPOUT_OPTIONS if hasattr(config, key)), None)
        if name is None:
            logger.warning("--encoder_attention_dropout: %s has none of %s; its attention dropout is left as it is",
                           type(config).__name__, ", ".join(ATTENTION_DROPOUT_OPTIONS))
        else:
            options[name] = model_args.encoder_attention_dropout
    return options


def build_model(model_args):
    path = model_args.model_name_or_path
    overrides = parse_config_overrides(model_args.config_overrides)
    if is_saved_docre_model(path):
        if model_args.encoder_config_overrides or model_args.encoder_attention_dropout is not None:
            raise ValueError("--encoder_config_overrides and --encoder_attention_dropout apply to a new model; a saved DocRE "
                             "model keeps its encoder's config.")
        if model_args.transfer_relation_bilinear:
            overrides["transfer_relation_bilinear"] = True
        return DocREModel.from_pretrained(path, **overrides)
    if not model_args.relations_file:
        raise ValueError("A new model needs --relations_file (a rel_info.json-style {code: name} map).")
    relations = json.load(open(model_args.relations_file))
    encoder_config = encoder_config_options(model_args)
    return DocREModel.from_encoder(path, relations=relations, method=model_args.method or "atlop", encoder_config=encoder_config,
                                   **overrides)


def given_options(argv):
    """Option names given on the command line (`--name value` or `--name=value`) or in a JSON arguments file."""
    if len(argv) == 1 and argv[0].endswith(".json"):
        return set(json.load(open(argv[0])))
    return {arg[2:].split("=", 1)[0].replace("-", "_") for arg in argv if arg.startswith("--")}


# Recipe options that add joined training documents (left out with a given count or a teacher).
JOINED_RECIPE_OPTIONS = ("joined_train_fraction", "joined_cross_pair_weight")


def apply_training_recipe(method, model_args, training_args, given, data_args=None):
    """The method's recipe for every option not given. Returns the values applied.

    Joined training documents (`joined_*`, in `data_args`) are not added when `--joined_train_documents` or a teacher is
    given (a teacher's logits are computed once, for fixed documents), or without `data_args`."""
    recipe = dict(METHODS[method].recipe) if method in METHODS else {}
    if data_args is None or "joined_train_documents" in given or getattr(model_args, "teacher_model_name_or_path", None):
        recipe = {name: value for name, value in recipe.items() if name not in JOINED_RECIPE_OPTIONS}
    elif data_args.joined_draw != "epoch":  # the weights are set on each epoch's draw
        recipe.pop("joined_cross_pair_weight", None)
    applied = {}
    for name, value in recipe.items():
        if name in given:
            continue
        target = model_args if hasattr(model_args, name) else data_args if hasattr(data_args, name) else training_args
        if getattr(target, name) != value:
            setattr(target, name, value)
            applied[name] = value
    return applied


def check_arguments(model_args, data_args, training_args):
    """What can be checked before loading data or training: fail now, not after hours of training."""
    if not (training_args.do_train or training_args.do_eval or training_args.do_predict):
        raise ValueError("Nothing to do: pass --do_train, --do_eval and/or --do_predict.")
    if model_args.method is not None and model_args.method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {model_args.method!r}")
    if model_args.training_recipe not in ("paper", "none"):
        raise ValueError(f"--training_recipe must be paper or none, got {model_args.training_recipe!r}")
    overrides = parse_config_overrides(model_args.config_overrides)
    try:  # the values' types and ranges, now rather than after loading data
        DocREConfig(**{k: v for k, v in overrides.items() if k != "method"}, method=overrides.get("method", model_args.method or "atlop"))
    except (ValueError, TypeError) as error:
        raise ValueError(f"--config_overrides: {error}") from None
    parse_config_overrides(model_args.encoder_config_overrides, "--encoder_config_overrides")
    if data_args.joined_draw not in ("epoch", "once"):
        raise ValueError(f"--joined_draw must be epoch or once, got {data_args.joined_draw!r}")
    if data_args.joined_train_documents is not None and data_args.joined_train_documents < 0:
        raise ValueError(f"--joined_train_documents must be 0 or more, got {data_args.joined_train_documents}")
    if not 0 <= data_args.joined_train_fraction:
        raise ValueError(f"--joined_train_fraction must be 0 or more, got {data_args.joined_train_fraction}")
    joined = data_args.joined_train_documents if data_args.joined_train_documents is not None else data_args.joined_train_fraction
    if joined and data_args.joined_draw == "epoch" and model_args.teacher_model_name_or_path:
        raise ValueError("--joined_train_documents with a teacher: pass --joined_draw once (the teacher's logits are "
                         "computed once, before training, for the documents it will see)")
    if not data_args.joined_cross_pair_weight >= 0:
        raise ValueError(f"--joined_cross_pair_weight must be >= 0, got {data_args.joined_cross_pair_weight}")
    if data_args.joined_cross_pair_weight != 1 and data_args.joined_draw != "epoch":
        raise ValueError("--joined_cross_pair_weight needs --joined_draw epoch (the weights are set on each epoch's draw)")
    if data_args.validation_holdout < 0:
        raise ValueError(f"--validation_holdout must be 0 or more, got {data_args.validation_holdout}")
    if data_args.validation_holdout and data_args.validation_file:
        raise ValueError("--validation_holdout and --validation_file both give evaluation data: pass one of them")
    for name in ("max_train_documents", "max_eval_documents", "max_predict_documents"):
        value = getattr(data_args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be at least 1 (leave it out to keep every document), got {value}")
    output_dir = training_args.output_dir
    if output_dir and os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output_dir {output_dir} is a file; the run writes a folder (model, metrics, predictions) there")
    if training_args.do_train and output_dir and os.path.isdir(output_dir) and not data_args.overwrite_output_dir:
        finished = any(os.path.isfile(os.path.join(output_dir, name)) for name in ("model.safetensors", "pytorch_model.bin"))
        if finished and training_args.resume_from_checkpoint is None and get_last_checkpoint(output_dir) is None:
            raise ValueError(f"--output_dir {output_dir} already holds a trained model; training would replace it. Pass "
                             "--overwrite_output_dir to replace it, or choose another --output_dir.")
    path = model_args.model_name_or_path
    if not is_saved_docre_model(path):
        if not model_args.relations_file:
            raise ValueError(f"{path} is not a saved DocRE model: a new model needs --relations_file (a rel_info.json-style map).")
        if not os.path.isfile(model_args.relations_file):
            raise ValueError(f"--relations_file {model_args.relations_file} does not exist")
    for name in ("train_file", "validation_file", "test_file"):
        value = getattr(data_args, name)
        if value and not os.path.isfile(value):
            raise ValueError(f"--{name} {value} does not exist")
    if data_args.dataset_config == "json":
        if training_args.do_train and not data_args.train_file:
            raise ValueError("--do_train needs --train_file (or a --dataset_config with a training split).")
        if training_args.do_eval and not (data_args.validation_file or data_args.validation_holdout):
            raise ValueError("--do_eval needs --validation_file or --validation_holdout N.")
        if training_args.do_predict and not data_args.test_file:
            raise ValueError("--do_predict needs --test_file.")
    if model_args.teacher_model_name_or_path and not training_args.do_train:
        raise ValueError("--teacher_model_name_or_path distils while training: add --do_train.")
    if training_args.push_to_hub:
        if not training_args.do_train:
            raise ValueError("--push_to_hub uploads the trained model: add --do_train.")
        if not training_args.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id org/name.")
        from huggingface_hub import constants, whoami

        if constants.HF_HUB_OFFLINE:
            raise ValueError("--push_to_hub with HF_HUB_OFFLINE set: the upload would fail after training.")
        try:
            whoami(token=training_args.hub_token)
        except Exception as error:  # noqa: BLE001 - any failure means the upload would fail too
            raise ValueError(f"--push_to_hub: the Hub cannot be reached or you are not logged in ({error}).") from error


def check_splits(documents, data_args, training_args):
    """After loading: every split the run needs is there."""
    needed = [(training_args.do_train, data_args.train_split, "--do_train"),
              (training_args.do_eval, data_args.validation_split, "--do_eval"),
              (training_args.do_predict, data_args.test_split, "--do_predict")]
    for wanted, split, flag in needed:
        if wanted and not documents.get(split):
            raise ValueError(f"{flag}: no documents in split {split!r} (splits found: {', '.join(documents) or 'none'}).")


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
    check_arguments(model_args, data_args, training_args)
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
    check_splits(documents, data_args, training_args)
    train_documents = documents.get(data_args.train_split)  # the annotated facts (Ign-F1), without joined copies
    if training_args.do_train and model_args.training_recipe == "paper":
        method = planned_method(model_args)
        applied = apply_training_recipe(method, model_args, training_args, given_options(sys.argv[1:]), data_args)
        if is_saved_docre_model(model_args.model_name_or_path) and "encoder_attention_dropout" in applied:
            del applied["encoder_attention_dropout"]  # a saved model keeps its encoder's config
            model_args.encoder_attention_dropout = None
        if applied:
            logger.info("Training recipe of %s (%s): %s", method, METHODS[method].recipe_source, applied)
    if data_args.joined_train_documents is None:
        data_args.joined_train_documents = round(data_args.joined_train_fraction * len(train_documents or ()))
    draw_each_epoch = data_args.joined_train_documents and train_documents and data_args.joined_draw == "epoch"
    if data_args.joined_train_documents and train_documents and not draw_each_epoch:
        joined = joined_training_documents(train_documents, data_args.joined_train_documents, data_args.join_max_documents, training_args.seed)
        documents[data_args.train_split] = train_documents + joined
        logger.info("Added %d joined training documents (2 to %d documents each)", len(joined), data_args.join_max_documents)
    model = build_model(model_args)
    featurizer = DocREFeaturizer.from_model(model)
    # With candidate pairs the model reads copies without the labels on other pairs; the metric reads the originals.
    features = {split: featurizer.featurize([with_candidate_pairs([d], [d["candidate_pairs"]])[0]
                                             if d.get("candidate_pairs") is not None else d for d in docs])
                for split, docs in documents.items()}
    eval_split = data_args.validation_split
    train_features = features.get(data_args.train_split)
    callbacks = []
    if draw_each_epoch and training_args.do_train:
        train_features = JoinedTrainingFeatures(train_features, train_documents, featurizer, data_args.joined_train_documents,
                                                data_args.join_max_documents, training_args.seed,
                                                cross_pair_weight=data_args.joined_cross_pair_weight)
        callbacks.append(JoinedTrainingCallback(train_features))
        logger.info("Added %d joined training documents per epoch, drawn afresh each epoch (2 to %d documents each; "
                    "loss weight of the pairs across their parts: %g)", data_args.joined_train_documents,
                    data_args.join_max_documents, data_args.joined_cross_pair_weight)
    if model_args.teacher_model_name_or_path and training_args.do_train:
        # Knowledge distillation: the teacher's logits on the training documents, computed once and read from disk
        # by every process. Under torchrun every rank computes its contiguous shards (resumable, see hf_docre.corpus)
        # and they wait for each other before training.
        folder = model_args.teacher_logits_dir or os.path.join(training_args.output_dir, "teacher_logits")
        teacher = DocREModel.from_pretrained(model_args.teacher_model_name_or_path).to(training_args.device)
        train_features = write_teacher_logits(teacher, train_features, folder, batch_size=training_args.per_device_eval_batch_size,
                                              progress=training_args.local_process_index == 0)
        del teacher
        logger.info("Distilling from %s: %d training documents with teacher logits in %s", model_args.teacher_model_name_or_path, len(train_features), folder)

    # Our push writes the whole folder and the card; the stock push would overwrite README.md.
    push, training_args.push_to_hub = training_args.push_to_hub, False
    card = DocREModelCardData(
        repo_id=training_args.hub_model_id or os.path.basename(os.path.normpath(training_args.output_dir)),
        base_model=data_args.base_model_id or (model_args.model_name_or_path if not os.path.isdir(model_args.model_name_or_path) else None),
        datasets=[data_args.dataset_id] if data_args.dataset_id else [],
        # Local files: each split is named by its own file (the card must not call the training file the test set).
        dataset_name=data_args.dataset_name or (data_args.dataset_config if data_args.dataset_config != "json" else None),
        eval_split=(f"{data_args.validation_holdout} held-out training documents" if data_args.validation_holdout
                    else os.path.basename(data_args.validation_file) if data_args.validation_file and data_args.dataset_config == "json"
                    else eval_split),
        test_split=(os.path.basename(data_args.test_file) if data_args.test_file and data_args.dataset_config == "json"
                    else data_args.test_split),
        license=model_args.license,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        data_collator=DocREDataCollator.from_model(model),
        train_dataset=train_features if training_args.do_train else None,
        eval_dataset=features.get(eval_split) if training_args.do_eval else None,
        optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(model, training_args.learning_rate, model_args.head_learning_rate,
                                                          training_args.weight_decay, eps=training_args.adam_epsilon),
        compute_metrics=DocREMetrics(model, features[eval_split], documents[eval_split], train_documents) if eval_split in features else None,
        # Evidence (DREEAM) is padded to the most sentences any document has, so the Trainer can concatenate batches.
        preprocess_logits_for_metrics=DocREMetrics.preprocess_logits(model, max_sentences=max(
            (len(f.get("token_sentence") or ()) - 1 for split in features.values() for f in split), default=0)),
        callbacks=[DocREModelCardCallback(card), *callbacks],
    )

    if training_args.do_train:
        if training_args.device.type == "cpu" and not (training_args.bf16 or training_args.fp16) and cpu_has_native_bf16():
            logger.info("This CPU computes bf16 natively: --bf16 (autocast) trains about 1.2x faster here, at the same F1 "
                        "within seed-to-seed variation (README, Benchmarks).")
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
        # Predicted in chunks, each chunk's relations appended to predictions.partial.jsonl as it is done: an
        # interrupted run keeps them. The metrics are computed once, on every chunk's relations.
        trainer.compute_metrics = None
        partial_path = os.path.join(training_args.output_dir, "predictions.partial.jsonl")
        writer = open(partial_path, "w", encoding="utf-8") if trainer.is_world_process_zero() else None
        records, losses = [], []
        chunk = max(1, data_args.predict_chunk_documents)
        for start in range(0, len(test_features), chunk):
            part = test_features[start : start + chunk]
            output = trainer.predict(part, metric_key_prefix="predict")
            found = predictions_to_official(output.predictions, part, model.config.id2label)
            records += found
            if "predict_loss" in output.metrics:
                losses.append((output.metrics["predict_loss"], len(part)))
            if writer is not None:
                writer.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in found)
                writer.flush()
        if writer is not None:
            writer.close()
        if has_labels:
            metrics = {f"predict_{k}": v for k, v in score_docred(records, documents[split], train_documents).items() if v is not None}
            if losses:
                metrics["predict_loss"] = sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
            trainer.log_metrics("predict", metrics)
            trainer.save_metrics("predict", metrics)
            card.test_results.update({k[len("predict_"):]: v for k, v in metrics.items() if k[len("predict_"):] in ("f1", "ign_f1", "precision", "recall")})
        if trainer.is_world_process_zero():
            json_path, zip_path = write_submission(records, training_args.output_dir)
            os.remove(partial_path)
            logger.info("Wrote %d predicted relations to %s and %s", len(records), json_path, zip_path)

    if training_args.do_train and trainer.is_world_process_zero():
        save_with_card(model, training_args.output_dir, card)  # README.md with the F1 / Ign-F1 measured above
        if push:
            push_to_hub(model, training_args.hub_model_id, card, token=training_args.hub_token)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Every rank waits for rank 0's writes, then the group is torn down before the interpreter exits (a rank
        # leaving with gloo's threads alive can abort with "terminate called without an active exception").
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
