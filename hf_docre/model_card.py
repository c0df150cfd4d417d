"""Model cards for DocRE models: a card-data object filled while training, rendered from `hub_cards/`, and a push
that uploads the complete model folder with its card (the stock `push_to_hub` would overwrite README.md).

    card = DocREModelCardData(datasets=["tonytan48/Re-DocRED"], dataset_name="Re-DocRED")
    trainer = Trainer(..., callbacks=[DocREModelCardCallback(card)])
    trainer.train(); trainer.evaluate()
    push_to_hub(model, "org/atlop-minilm", card)
"""

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

WANG_2019 = (
    "Wang et al. 2019, Fine-tune Bert for DocRED with Two-step Process",
    "@article{wang2019finetune,\n  title={Fine-tune Bert for DocRED with Two-step Process},\n"
    "  author={Wang, Hong and Focke, Christfried and Sylvester, Rob and Mishra, Nilesh and Wang, William},\n"
    "  journal={arXiv preprint arXiv:1909.11898},\n  year={2019}\n}",
)

# method -> (name, paper, what it is, citation)
METHODS = {
    "atlop": (
        "ATLOP",
        "Zhou et al. 2021, Document-Level Relation Extraction with Adaptive Thresholding and Localized Context Pooling",
        "Entities are logsumexp-pooled embeddings of `*` markers around their mentions; each pair adds a context vector "
        "pooled with the product of the two entities' attention (localized context pooling), a group bilinear layer "
        "scores the relations, and an adaptive-thresholding loss learns a per-pair threshold class.",
        "@inproceedings{zhou2021atlop,\n  title={Document-Level Relation Extraction with Adaptive Thresholding and "
        "Localized Context Pooling},\n  author={Zhou, Wenxuan and Huang, Kevin and Ma, Tengyu and Huang, Jing},\n"
        "  booktitle={Proceedings of AAAI},\n  year={2021}\n}",
    ),
    "bert-baseline": (
        "BERT baseline", WANG_2019[0],
        "The encoder reads the whole document; an entity is the mean of its mentions' tokens, projected to a low "
        "dimension; a bilinear layer scores every relation of a pair with binary cross-entropy, decoded with a "
        "global threshold tuned on dev data.",
        WANG_2019[1],
    ),
    "two-step": (
        "BERT two-step", WANG_2019[0],
        "Two models in one checkpoint: step 1 decides whether a pair has any relation (trained on all pairs, with "
        "no-relation pairs sub-sampled 3:1 in each batch); step 2 names the relations of the pairs step 1 accepts "
        "(trained on related pairs only). Each step is the BERT baseline's architecture.",
        WANG_2019[1],
    ),
    "kd-docre": (
        "KD-DocRE", "Tan et al. 2022, Document-Level Relation Extraction with Adaptive Focal Loss and Knowledge Distillation",
        "ATLOP's entity and context representation, a group bilinear pair representation refined by axial attention "
        "over the entity-pair table (row and column of each pair), a linear classifier, and the adaptive focal loss; "
        "optionally pre-trained on distantly supervised data with a teacher's logits (knowledge distillation) and "
        "fine-tuned on annotated data.",
        "@inproceedings{tan2022kddocre,\n  title={Document-Level Relation Extraction with Adaptive Focal Loss and "
        "Knowledge Distillation},\n  author={Tan, Qingyu and He, Ruidan and Bing, Lidong and Ng, Hwee Tou},\n"
        "  booktitle={Findings of ACL},\n  year={2022}\n}",
    ),
}


@dataclass
class DocREModelCardData:
    """What the card says. Fields left empty are filled from the model and by [`DocREModelCardCallback`]."""

    repo_id: str = "your-org/your-docre-model"
    method: str | None = None  # default: the model's `config.method`
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
        for key in ("f1", "ign_f1", "precision", "recall"):
            for prefix in ("eval_", ""):
                if metrics and prefix + key in metrics:
                    self.card_data.eval_results[key] = metrics[prefix + key]


def _is_hub_id(name):
    """A Hub repo id (`org/name` or `name`), not a local folder: only those go into the card's `base_model`."""
    return bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name)) and not os.path.exists(name)


def _head_description(config):
    if config.pair_head == "bilinear":
        head = f"mean of the mentions' tokens, projection to {config.emb_size}, bilinear classifier"
        if config.two_step:
            encoder = "the shared encoder" if config.two_step_shared_encoder else "its own encoder"
            head += f" (twice: step 1 relation / no relation with {encoder}, step 2 the relation types)"
        head += f", binary cross-entropy, global threshold {config.global_threshold:g}"
    else:
        head = (f"{config.mention_pooling} mention pooling, localized context pooling {'on' if config.use_context_pooling else 'off'}, "
                f"group bilinear {config.emb_size}/{config.block_size}")
        if config.axial_attention:
            head += f", axial attention over the entity-pair table ({config.pair_hidden_size or config.encoder.hidden_size} features), linear classifier"
        if config.loss == "afl":
            head += f", adaptive focal loss (gamma {config.focal_gamma:g}, {config.focal_positive_weight} positive weight)"
        else:
            head += f", {config.loss} loss"
    if config.max_relations_per_pair > 0:
        head += f", at most {config.max_relations_per_pair} relations per pair"
    return head + f", windows of {config.effective_window_size} tokens"


def _yaml(model, card):
    lines = ["library_name: transformers", f"license: {card.license}", f"language:\n- {card.language}", "tags:",
             "- document-level-relation-extraction", "- relation-extraction", f"- {card.method}", "- hf_docre"]
    if card.base_model and _is_hub_id(card.base_model):
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
    name, paper, description, citation = METHODS.get(card.method, (card.method, "", "", ""))
    config = model.config
    if card.eval_results:
        rows = "\n".join(f"| {label} | {100 * card.eval_results[key]:.2f} |" for key, label in
                         (("f1", "F1"), ("ign_f1", "Ign-F1"), ("precision", "Precision"), ("recall", "Recall")) if key in card.eval_results)
        results = f"On {card.dataset_name or 'the evaluation data'} ({card.eval_split}):\n\n| metric | value |\n| --- | --- |\n{rows}"
    else:
        results = "Not evaluated yet."
    head = _head_description(config)
    hyper = ", ".join(f"{k} {v}" for k, v in card.hyperparameters.items() if v is not None) or "not recorded"
    template = read_template("model_card.md")
    return template.format(
        yaml=_yaml(model, card), title=card.repo_id.split("/")[-1], method=name, paper=paper, description=description,
        base_model_link=(f"[`{card.base_model}`](https://huggingface.co/{card.base_model})" if _is_hub_id(card.base_model)
                         else f"the encoder `{os.path.basename(os.path.normpath(card.base_model))}` (a local folder; set the card's `base_model` to its Hub id)"),
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
