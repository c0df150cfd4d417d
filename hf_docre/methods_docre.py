"""The published DocRE methods: one entry per method with its config preset, paper, citation, card text and
training recipe. `DocREConfig(method=...)`, the model card, `examples/run_docre.py` and the README read it.

Loaded through ``trust_remote_code`` (flat sibling, standard library only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

WANG_2019 = "Wang et al. 2019, Fine-tune Bert for DocRED with Two-step Process"
WANG_2019_BIBTEX = (
    "@article{wang2019finetune,\n  title={Fine-tune Bert for DocRED with Two-step Process},\n"
    "  author={Wang, Hong and Focke, Christfried and Sylvester, Rob and Mishra, Nilesh and Wang, William},\n"
    "  journal={arXiv preprint arXiv:1909.11898},\n  year={2019}\n}"
)


@dataclass(frozen=True)
class DocREMethod:
    """A published method.

    Args:
        name: the `method=` value.
        display_name: how cards and tables name it.
        paper: authors, year and title.
        citation: BibTeX.
        description: what the model is, for its card.
        preset: `DocREConfig` options the method sets (options given explicitly win).
        recipe: the paper's training recipe as `TrainingArguments` values (plus `head_learning_rate` and
            `encoder_attention_dropout`; `warmup_steps` below 1 is a ratio), the defaults of `run_docre.py --method
            <name>` unless given on the command line.
        recipe_source: where the recipe comes from.
    """

    name: str
    display_name: str
    paper: str
    citation: str
    description: str
    preset: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    recipe_source: str = ""


ATLOP_RECIPE = {
    "learning_rate": 5e-5, "head_learning_rate": 1e-4, "per_device_train_batch_size": 4, "num_train_epochs": 30,
    "warmup_steps": 0.06, "adam_epsilon": 1e-6, "max_grad_norm": 1.0, "lr_scheduler_type": "linear",
    # Not the papers': the encoder's dropout on attention probabilities (BERT's 0.1) is off. On CPU it pushes every
    # layer's attention off PyTorch's fused kernel (1.2-1.5x slower training); on the quickstart it cost no F1 over
    # three seeds (README, Benchmarks). Hidden-state dropout (the papers' "dropout 0.1") stays.
    "encoder_attention_dropout": 0.0,
}

# Not the papers': joined training documents (2-4 training documents side by side, drawn afresh every epoch, pairs
# across them NA), half as many as the training documents. Trained without them a model links unrelated parts of a
# long text (quickstart split, 5 epochs, 4 held-out documents joined: 3.24x the relations, 60% across); with them
# 0.94x and 10%, at a higher held-out F1 (49.87 against 46.42; README, Benchmarks). Weighting the cross-part pairs
# (`joined_cross_pair_weight` 4) cut the cross links to 3% but cost F1 (45.49), so it is an option, not the recipe.
# Measured for ATLOP only.
JOINED_TRAINING_RECIPE = {"joined_train_fraction": 0.5}

# Wang et al. 2019, the BERT baseline (the two-step model is this twice): no markers, entity = mean of its mentions'
# tokens, projection to 128, bilinear classifier, BCE with a global threshold.
WANG_2019_PRESET = {
    "entity_marker": None, "mention_representation": "span", "mention_pooling": "mean",
    "use_context_pooling": False, "pair_head": "bilinear", "emb_size": 128, "loss": "bce",
    "max_relations_per_pair": 0,
}
WANG_2019_RECIPE = {"learning_rate": 1e-5, "head_learning_rate": 1e-5}
WANG_2019_RECIPE_SOURCE = "Wang et al. 2019 Sec. 3.2 (learning rate 1e-5; batch size and epochs not given)"

METHODS: dict[str, DocREMethod] = {}


def register_method(method: DocREMethod, exist_ok: bool = False) -> None:
    """Add a method to the registry (`DocREConfig(method=method.name)` then applies its preset)."""
    if method.name in METHODS and not exist_ok:
        raise ValueError(f"register_method: {method.name!r} is already registered")
    METHODS[method.name] = method


register_method(DocREMethod(
    name="atlop",
    display_name="ATLOP",
    paper="Zhou et al. 2021, Document-Level Relation Extraction with Adaptive Thresholding and Localized Context Pooling",
    citation=(
        "@inproceedings{zhou2021atlop,\n  title={Document-Level Relation Extraction with Adaptive Thresholding and "
        "Localized Context Pooling},\n  author={Zhou, Wenxuan and Huang, Kevin and Ma, Tengyu and Huang, Jing},\n"
        "  booktitle={Proceedings of AAAI},\n  year={2021}\n}"
    ),
    description=(
        "Entities are logsumexp-pooled embeddings of `*` markers around their mentions; each pair adds a context "
        "vector pooled with the product of the two entities' attention (localized context pooling), a group bilinear "
        "layer scores the relations, and an adaptive-thresholding loss learns a per-pair threshold class."
    ),
    preset={},  # the DocREConfig defaults are ATLOP's
    recipe={**ATLOP_RECIPE, **JOINED_TRAINING_RECIPE},
    recipe_source="ATLOP paper Table 2 (DocRED, BERT-base) and Sec. 4.1; Adam epsilon 1e-6 from the authors' code; "
                  "joined training documents are hf_docre's (long documents)",
))

register_method(DocREMethod(
    name="bert-baseline",
    display_name="BERT baseline",
    paper=WANG_2019,
    citation=WANG_2019_BIBTEX,
    description=(
        "The encoder reads the whole document; an entity is the mean of its mentions' tokens, projected to a low "
        "dimension; a bilinear layer scores every relation of a pair with binary cross-entropy, decoded with a "
        "global threshold tuned on dev data."
    ),
    preset=WANG_2019_PRESET,
    recipe=WANG_2019_RECIPE,
    recipe_source=WANG_2019_RECIPE_SOURCE,
))

register_method(DocREMethod(
    name="two-step",
    display_name="BERT two-step",
    paper=WANG_2019,
    citation=WANG_2019_BIBTEX,
    description=(
        "Two models in one checkpoint: step 1 decides whether a pair has any relation (trained on all pairs, with "
        "no-relation pairs sub-sampled 3:1 in each batch); step 2 names the relations of the pairs step 1 accepts "
        "(trained on related pairs only). Each step is the BERT baseline's architecture."
    ),
    preset={**WANG_2019_PRESET, "two_step": True},  # each step is the baseline's architecture
    recipe=WANG_2019_RECIPE,
    recipe_source=WANG_2019_RECIPE_SOURCE,
))

register_method(DocREMethod(
    name="kd-docre",
    display_name="KD-DocRE",
    paper="Tan et al. 2022, Document-Level Relation Extraction with Adaptive Focal Loss and Knowledge Distillation",
    citation=(
        "@inproceedings{tan2022kddocre,\n  title={Document-Level Relation Extraction with Adaptive Focal Loss and "
        "Knowledge Distillation},\n  author={Tan, Qingyu and He, Ruidan and Bing, Lidong and Ng, Hwee Tou},\n"
        "  booktitle={Findings of ACL},\n  year={2022}\n}"
    ),
    description=(
        "ATLOP's entity and context representation, a group bilinear pair representation refined by axial attention "
        "over the entity-pair table (row and column of each pair), a linear classifier, and the adaptive focal loss; "
        "optionally pre-trained on distantly supervised data with a teacher's logits (knowledge distillation) and "
        "fine-tuned on annotated data."
    ),
    preset={"axial_attention": True, "loss": "afl", "focal_gamma": 0.5},
    # Training on annotated data follows ATLOP's recipe; the paper's distillation stage uses learning rate 1e-5 for
    # 2 epochs and its fine-tuning stage 1e-6 for 10 epochs (pass them explicitly for those stages).
    recipe=ATLOP_RECIPE,
    recipe_source="KD-DocRE Sec. 4.1 (built on ATLOP's code: warm-up 6%, gradient norm 1.0); ATLOP Table 2",
))


register_method(DocREMethod(
    name="dreeam",
    display_name="DREEAM",
    paper="Ma et al. 2023, DREEAM: Guiding Attention with Evidence for Improving Document-Level Relation Extraction",
    citation=(
        "@inproceedings{ma2023dreeam,\n  title={DREEAM: Guiding Attention with Evidence for Improving Document-Level "
        "Relation Extraction},\n  author={Ma, Youmi and Wang, An and Okazaki, Naoaki},\n  booktitle={Proceedings of "
        "EACL},\n  year={2023}\n}"
    ),
    description=(
        "ATLOP (logsumexp-pooled `*` markers, localized context pooling, group bilinear, adaptive thresholding) whose "
        "localized-context attention is trained to fall on the evidence sentences (a KL divergence to the gold "
        "evidence, weight 0.1); each predicted relation comes with its evidence: the sentences holding more than 0.2 "
        "of the pair's context. No parameters beyond ATLOP's."
    ),
    preset={"pair_head": "dreeam", "evidence_threshold": 0.2, "evidence_weight": 0.1},
    recipe=ATLOP_RECIPE,
    recipe_source="DREEAM's released scripts/run_bert.sh (ATLOP's recipe: 5e-5 / 1e-4, batch 4, 30 epochs, warm-up 6%)",
))


register_method(DocREMethod(
    name="dsdocre",
    display_name="DSDocRE",
    paper="Xiao et al. 2020, Denoising Relation Extraction from Document-level Distant Supervision",
    citation=(
        "@inproceedings{xiao2020dsdocre,\n  title={Denoising Relation Extraction from Document-level Distant "
        "Supervision},\n  author={Xiao, Chaojun and Yao, Yuan and Xie, Ruobing and Han, Xu and Liu, Zhiyuan and "
        "Sun, Maosong and Lin, Fen and Lin, Leyu},\n  booktitle={Proceedings of EMNLP},\n  year={2020}\n}"
    ),
    description=(
        "One marker pair per entity around its mentions, entities max-pooled over their mentions' start markers, a "
        "bilinear relation representation and a linear classifier trained with binary cross-entropy over every "
        "relation and NA; one relation per pair (the best, if it beats NA). Its encoder can be pre-trained on "
        "distantly supervised documents denoised by a ranker (mention-entity matching, relation detection, "
        "relational fact alignment), and it scores only the ranker's candidate pairs."
    ),
    preset={
        "entity_marker": "indexed", "mention_pooling": "max", "mention_representation": "start",
        "use_context_pooling": False, "pair_head": "bilinear_relation", "emb_size": 256, "loss": "bce_na",
        "max_relations_per_pair": 1,
    },
    recipe={"learning_rate": 1e-5, "head_learning_rate": 1e-5, "per_device_train_batch_size": 4, "num_train_epochs": 30,
            "lr_scheduler_type": "constant", "warmup_steps": 0, "max_grad_norm": 1.0},
    recipe_source="DSDocRE Sec. 4.3 (batch 4; the released code uses 6) and its fine-tuning config (lr 1e-5, constant)",
))


def method_preset(name: str) -> dict:
    """The config options `method=name` sets; a clear error for an unknown name."""
    if name not in METHODS:
        raise ValueError(f"DocREConfig: `method` must be one of {tuple(METHODS)}, got {name!r}.")
    return METHODS[name].preset
