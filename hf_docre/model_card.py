"""Model cards for DocRE models: a card-data object filled while training, rendered from `hub_cards/`, and a push
that uploads the complete model folder with its card (the stock `push_to_hub` would overwrite README.md).

    card = DocREModelCardData(datasets=["tonytan48/Re-DocRED"], dataset_name="Re-DocRED")
    trainer = Trainer(..., callbacks=[DocREModelCardCallback(card)])
    trainer.train(); trainer.evaluate()
    push_to_hub(model, "org/atlop-minilm", card)
"""

from __future__ import annotations

import importlib.resources
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainerCallback


def read_template(name: str) -> str:
    """The text of a card template from `hub_cards/`, installed as the package data `hf_docre.hub_cards` (a source
    checkout that was not installed reads the repository's folder)."""
    try:
        return importlib.resources.files("hf_docre.hub_cards").joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return (Path(__file__).resolve().parents[1] / "hub_cards" / name).read_text(encoding="utf-8")

# What the card says about a method comes from the method registry (`methods_docre.METHODS`).
from .methods_docre import METHODS  # noqa: E402

_METRICS = (("f1", "F1"), ("ign_f1", "Ign-F1"), ("precision", "Precision"), ("recall", "Recall"))


@dataclass
class DocREModelCardData:
    """What the card says. Fields left empty are filled from the model and by [`DocREModelCardCallback`]."""

    repo_id: str = "your-org/your-docre-model"
    method: str | None = None  # default: the model's `config.method`
    base_model: str | None = None
    datasets: list = field(default_factory=list)
    dataset_name: str | None = None
    language: str = "en"
    # The licence of the trained model: yours to choose (mind the encoder's and the data's). None writes none.
    license: str | None = None
    train_documents: int | None = None
    hyperparameters: dict = field(default_factory=dict)
    eval_results: dict = field(default_factory=dict)  # {"f1": 0.44, "ign_f1": 0.43} as fractions, on `eval_split`
    eval_split: str = "dev"
    test_results: dict = field(default_factory=dict)  # the same on `test_split` (Trainer.predict with labels)
    test_split: str = "test"
    # A model converted from the authors' released checkpoint (`hf_docre.conversion`): its source, file and command.
    converted_from: dict | None = None

    def fill_from_model(self, model):
        if self.converted_from is None:
            self.converted_from = getattr(model.config, "converted_from", None)
        if self.method is None:
            self.method = getattr(model.config, "method", "atlop")
        if self.base_model is None:
            self.base_model = getattr(model.config.encoder, "_name_or_path", None) or model.config.encoder.model_type
        return self


class DocREModelCardCallback(TrainerCallback):
    """Fills a [`DocREModelCardData`] as the Trainer runs: hyper-parameters at the start, F1 / Ign-F1 at evaluation."""

    def __init__(self, card_data):
        self.card_data = card_data

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        self.card_data.hyperparameters.update({
            "learning_rate (encoder)": args.learning_rate,
            "train_batch_size": args.per_device_train_batch_size * max(1, args.world_size) * args.gradient_accumulation_steps,
            "num_train_epochs": args.num_train_epochs,
            "max_steps": args.max_steps if args.max_steps > 0 else None,
            "warmup_steps": args.warmup_steps,
            "max_grad_norm": args.max_grad_norm,
            "seed": args.seed,
        })
        optimizer = kwargs.get("optimizer")
        if optimizer is not None and len(optimizer.param_groups) > 1:
            self.card_data.hyperparameters["learning_rate (head)"] = optimizer.param_groups[-1].get("initial_lr", optimizer.param_groups[-1]["lr"])
        if train_dataloader is not None and hasattr(train_dataloader, "dataset"):
            self.card_data.train_documents = len(train_dataloader.dataset)
        if model is not None:
            self.card_data.fill_from_model(model)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.card_data.eval_results.update(_scores(metrics, ("eval_", "")))

    def on_predict(self, args, state, control, metrics=None, **kwargs):
        self.card_data.test_results.update(_scores(metrics, ("predict_", "test_")))


def _scores(metrics, prefixes):
    found = {}
    for key, _ in _METRICS:
        for prefix in prefixes:
            if metrics and prefix + key in metrics:
                found[key] = metrics[prefix + key]
    return found


def _is_hub_id(name):
    """A Hub repo id (`org/name` or `name`), not a local folder: only those go into the card's `base_model`."""
    return bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name)) and not os.path.exists(name)


def _head_description(config):
    """The card's one-line description of the head: the pair head's own (`PairHead.describe`), then decoding and
    windows."""
    from .heads_docre import PAIR_HEADS, PairHead

    head = PAIR_HEADS.get(config.head_type, PairHead).describe(config)
    if config.max_relations_per_pair > 0:
        head += f", at most {config.max_relations_per_pair} relations per pair"
    return head + f", windows of {config.effective_window_size} tokens"


def _results(card):
    """[(split name, scores)] for the splits that were scored."""
    return [(split, scores) for split, scores in ((card.eval_split, card.eval_results), (card.test_split, card.test_results)) if scores]


def card_data(card):
    """The Hub metadata of the card (`huggingface_hub.ModelCardData` with one `EvalResult` per scored metric)."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset = card.dataset_name or (card.datasets[0] if card.datasets else "DocRED-format data")
    results = [
        EvalResult(task_type="relation-extraction", task_name="Document-level relation extraction",
                   dataset_type=card.datasets[0] if card.datasets else "docred", dataset_name=dataset, dataset_split=split,
                   metric_type=key, metric_value=round(100 * scores[key], 2), metric_name=label)
        for split, scores in _results(card) for key, label in _METRICS[:2] if key in scores
    ]
    return ModelCardData(
        language=card.language, license=card.license or None, library_name="transformers", pipeline_tag="text-classification",
        tags=["document-level-relation-extraction", "relation-extraction", card.method, "hf_docre"],
        base_model=card.base_model if card.base_model and _is_hub_id(card.base_model) else None,
        datasets=list(card.datasets) or None, model_name=card.repo_id.split("/")[-1], eval_results=results or None,
    )


def render_model_card(model, card: DocREModelCardData) -> str:
    """The README.md text of a model, from `hub_cards/model_card.md`."""
    card.fill_from_model(model)
    method = METHODS.get(card.method)
    name, paper, description, citation = (
        (method.display_name, method.paper, method.description, method.citation) if method else (card.method, "", "", "")
    )
    config = model.config
    tables = []
    for split, scores in _results(card):
        rows = "\n".join(f"| {label} | {100 * scores[key]:.2f} |" for key, label in _METRICS if key in scores)
        where = f"{card.dataset_name} ({split})" if card.dataset_name else split
        tables.append(f"On {where}:\n\n| metric | value |\n| --- | --- |\n{rows}")
    results = "\n\n".join(tables) or "Not evaluated: the training run scored no evaluation or test data."
    origin = "trained with hf_docre and the stock `transformers.Trainer`."
    provenance = ""
    converted = card.converted_from
    if converted:
        from .conversion import SOURCES

        source = SOURCES[converted["source"]]
        origin = (f"trained by the authors with their code ({source.repository}) and converted to hf_docre from their "
                  f"released checkpoint `{converted['checkpoint']}`, with the options that reproduce their computation.")
        rows = "\n".join(f"| {setting} | {split} | {ign:.2f} | {f1:.2f} |" for setting, split, ign, f1 in source.paper_scores)
        if not tables:
            results = ("The paper's published scores, **not re-measured by hf_docre** (the released file may be one of "
                       "the runs behind them):\n\n| setting | split | Ign-F1 | F1 |\n| --- | --- | --- | --- |\n" + rows)
        command = converted.get("command") or (f"hf-docre convert --source {converted['source']} --checkpoint "
                                               f"{converted['checkpoint']} --encoder {converted['encoder']} --output <folder>")
        provenance = (
            "## Conversion\n\n"
            f"- Source: {source.repository}, file `{converted['checkpoint']}` ({source.files}).\n"
            f"- Licence of the source code and weights: {source.license}.\n"
            f"- Command: `{command}`\n"
            "- Options that reproduce the released computation: "
            + ", ".join(f"`{k}={getattr(config, k)!r}`" for k in source.options if hasattr(config, k)) + ".\n"
            + "".join(f"- {note}.\n" for note in converted.get("notes") or ())
            + "\n"
        )
    head = _head_description(config)
    hyper = ", ".join(f"{k} {v}" for k, v in card.hyperparameters.items() if v is not None) or "not recorded"
    template = read_template("model_card.md")
    return template.format(
        yaml=card_data(card).to_yaml(), title=card.repo_id.split("/")[-1], method=name, paper=paper, description=description,
        origin=origin, provenance=provenance,
        base_model_link=(f"[`{card.base_model}`](https://huggingface.co/{card.base_model})" if _is_hub_id(card.base_model)
                         else f"the encoder `{os.path.basename(os.path.normpath(card.base_model))}` "
                              "(a local folder; set the card's `base_model` to its Hub id)"),
        num_relations=config.num_relations - 1, results_table=results, repo_id=card.repo_id,
        datasets_text=", ".join(card.datasets) or card.dataset_name or "DocRED-format documents",
        train_documents=card.train_documents if card.train_documents is not None else "unknown",
        hyperparameters=hyper, head=head, citation=citation,
        window=config.effective_window_size,
        license_text=f"`{card.license}`" if card.license else "not set by the trainer (ask before reuse; mind the encoder's and the training data's licences)",
    )


def save_with_card(model, folder: str | os.PathLike, card: DocREModelCardData) -> None:
    """`model.save_pretrained(folder)` plus README.md rendered from the card data."""
    model.save_pretrained(folder)
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as f:
        f.write(render_model_card(model, card))


def push_to_hub(
    model,
    repo_id: str,
    card: DocREModelCardData | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload DocRE model",
    api=None,
):
    """Write the complete folder (safetensors, config, tokenizer, code, pipeline, card) and upload it.

    Unlike `PreTrainedModel.push_to_hub`, the README is our card, not overwritten. Returns the `CommitInfo`.
    """
    from huggingface_hub import HfApi

    card = card or DocREModelCardData()
    card.repo_id = repo_id
    api = api or HfApi(token=token)
    with tempfile.TemporaryDirectory() as folder:
        save_with_card(model, folder, card)
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message,
                                 ignore_patterns=["*.bin", "*.pt", "*.pth", "*.pkl", "training_args*"])
