"""Model cards for DocRE models: a card-data object filled while training, rendered from `hub_cards/`, and a push
that uploads the complete model folder with its card (the stock `push_to_hub` would overwrite README.md).

    card = DocREModelCardData(datasets=["tonytan48/Re-DocRED"], dataset_name="Re-DocRED")
    trainer = Trainer(..., callbacks=[DocREModelCardCallback(card)])
    trainer.train(); trainer.evaluate()
    push_to_hub(model, "org/atlop-minilm", card)
"""

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainerCallback

TEMPLATES = Path(__file__).resolve().parents[1] / "hub_cards"

METHODS = {
    "atlop": (
        "ATLOP",
        "Zhou et al. 2021, Document-Level Relation Extraction with Adaptive Thresholding and Localized Context Pooling",
        "@inproceedings{zhou2021atlop,\n  title={Document-Level Relation Extraction with Adaptive Thresholding and "
        "Localized Context Pooling},\n  author={Zhou, Wenxuan and Huang, Kevin and Ma, Tengyu and Huang, Jing},\n"
        "  booktitle={Proceedings of AAAI},\n  year={2021}\n}",
    ),
}


@dataclass
class DocREModelCardData:
    """What the card says. Fields left empty are filled from the model and by [`DocREModelCardCallback`]."""

    repo_id: str = "your-org/your-docre-model"
    method: str = "atlop"
    base_model: str | None = None
    datasets: list = field(default_factory=list)
    dataset_name: str | None = None
    language: str = "en"
    license: str = "mit"
    train_documents: int | None = None
    hyperparameters: dict = field(default_factory=dict)
    eval_results: dict = field(default_factory=dict)  # {"f1": 0.44, "ign_f1": 0.43} as fractions
    eval_split: str = "dev"

    def fill_from_model(self, model):
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
        for key in ("f1", "ign_f1", "precision", "recall"):
            for prefix in ("eval_", ""):
                if metrics and prefix + key in metrics:
                    self.card_data.eval_results[key] = metrics[prefix + key]


def _yaml(model, card):
    lines = ["library_name: transformers", f"license: {card.license}", f"language:\n- {card.language}", "tags:",
             "- document-level-relation-extraction", "- relation-extraction", f"- {card.method}", "- hf_docre"]
    if card.base_model:
        lines.append(f"base_model: {card.base_model}")
    if card.datasets:
        lines.append("datasets:\n" + "\n".join(f"- {d}" for d in card.datasets))
    if card.eval_results:
        dataset = card.dataset_name or (card.datasets[0] if card.datasets else "DocRED-format data")
        metrics = "\n".join(
            f"      - type: {key}\n        value: {100 * card.eval_results[key]:.2f}\n        name: {label}"
            for key, label in (("f1", "F1"), ("ign_f1", "Ign-F1"))
            if key in card.eval_results
        )
        lines.append(
            "model-index:\n"
            f"- name: {card.repo_id.split('/')[-1]}\n"
            "  results:\n"
            "  - task:\n      type: relation-extraction\n      name: Document-level relation extraction\n"
            f"    dataset:\n      type: {card.datasets[0] if card.datasets else 'docred'}\n      name: {dataset}\n"
            f"      split: {card.eval_split}\n"
            f"    metrics:\n{metrics}"
        )
    return "\n".join(lines)


def render_model_card(model, card):
    """The README.md text of a model, from `hub_cards/model_card.md`."""
    card.fill_from_model(model)
    name, paper, citation = METHODS.get(card.method, (card.method, "", ""))
    config = model.config
    if card.eval_results:
        rows = "\n".join(f"| {label} | {100 * card.eval_results[key]:.2f} |" for key, label in
                         (("f1", "F1"), ("ign_f1", "Ign-F1"), ("precision", "Precision"), ("recall", "Recall")) if key in card.eval_results)
        results = f"On {card.dataset_name or 'the evaluation data'} ({card.eval_split}):\n\n| metric | value |\n| --- | --- |\n{rows}"
    else:
        results = "Not evaluated yet."
    head = (f"{config.mention_pooling} mention pooling, localized context pooling {'on' if config.use_context_pooling else 'off'}, "
            f"group bilinear {config.emb_size}/{config.block_size}, {config.loss} loss, at most {config.max_relations_per_pair} relations per pair, "
            f"windows of {config.effective_window_size} tokens")
    hyper = ", ".join(f"{k} {v}" for k, v in card.hyperparameters.items() if v is not None) or "not recorded"
    template = (TEMPLATES / "model_card.md").read_text(encoding="utf-8")
    return template.format(
        yaml=_yaml(model, card), title=card.repo_id.split("/")[-1], method=name, paper=paper,
        base_model=card.base_model, base_model_url=f"https://huggingface.co/{card.base_model}",
        num_relations=config.num_relations - 1, results_table=results, repo_id=card.repo_id,
        datasets_text=", ".join(card.datasets) or card.dataset_name or "DocRED-format documents",
        train_documents=card.train_documents if card.train_documents is not None else "unknown",
        hyperparameters=hyper, head=head, citation=citation,
    )


def save_with_card(model, folder, card):
    """`model.save_pretrained(folder)` plus README.md rendered from the card data."""
    model.save_pretrained(folder)
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as f:
        f.write(render_model_card(model, card))


def push_to_hub(model, repo_id, card=None, private=False, token=None, commit_message="Upload DocRE model", api=None):
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
