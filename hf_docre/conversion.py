"""Convert the authors' released checkpoints (raw `torch.save(state_dict)` files of their research code) into hf_docre
models that `from_pretrained`, the pipeline and `push_to_hub` take.

    model = convert_checkpoint("atlop", "atlop-roberta.pt", encoder="roberta-large", output="atlop-roberta")

A converted model turns on the options that reproduce the released code's computation (see `SOURCES` and the
README's paper-vs-code table): the two-window rule for 513-1024 tokens, the `+ eps` of the localized-context
normaliser, every pair scored, each word tokenized alone, and per source the rest (DREEAM: the last three layers and
evidence retrieval; KD-DocRE: its released axial network and bias-free projection). Every check runs before anything is written.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from dataclasses import dataclass, field

import torch

# DocRED's relation ids in the order of its `rel2id.json` (index 0, "Na", is hf_docre's NA class): the columns of
# every released DocRED checkpoint.
DOCRED_RELATIONS = (
    "P17 P131 P27 P150 P577 P175 P569 P570 P161 P264 P527 P361 P495 P19 P571 P54 P102 P463 P3373 P40 P30 P50 P1441 "
    "P1001 P69 P26 P607 P57 P159 P22 P400 P1344 P206 P127 P170 P178 P20 P1412 P155 P118 P710 P6 P108 P276 P156 P674 "
    "P166 P194 P123 P140 P800 P449 P58 P35 P179 P706 P162 P37 P241 P31 P403 P580 P137 P585 P112 P86 P176 P749 P937 "
    "P36 P576 P355 P136 P364 P272 P172 P205 P279 P1376 P171 P25 P488 P582 P740 P840 P1366 P676 P1336 P1056 P551 P39 "
    "P1365 P737 P190 P807 P1198"
).split()

# The released code's fixed window and its per-encoder end tokens for the first window (`process_long_input`).
RELEASED_WINDOW = 512


class CheckpointConversionError(ValueError):
    """A released checkpoint that cannot be converted; the message names the file, the key and the expected shape."""


@dataclass(frozen=True)
class ReleasedSource:
    """A research code base whose checkpoints convert.

    Args:
        name: the `--source` value.
        method: the hf_docre method the model becomes.
        repository: where the code and the checkpoints are.
        files: the released checkpoint files (as the authors name them).
        license: the code's licence, as stated in its repository.
        paper_scores: the paper's published scores, `[(setting, split, Ign-F1, F1)]`.
        options: the `DocREConfig` options that reproduce the released computation.
        dropped: key prefixes of the released file that the released forward never reads (not converted).
        renames: (released key prefix, hf_docre key prefix) of the head's layers.
    """

    name: str
    method: str
    repository: str
    files: str
    license: str
    paper_scores: tuple
    options: dict = field(default_factory=dict)
    dropped: tuple = ()
    renames: tuple = (("head_extractor.", "head.head_extractor."), ("tail_extractor.", "head.tail_extractor."),
                      ("bilinear.", "head.bilinear."))


_RELEASED_COMMON = dict(
    long_input="two_windows", window_size=RELEASED_WINDOW, distant_pairs="zero_context", word_tokenization="isolated",
    max_relations_per_pair=4, classifier_dropout=0.0, use_context_pooling=True, mention_pooling="logsumexp",
    entity_marker="*", mention_representation="start",
)

SOURCES = {
    "atlop": ReleasedSource(
        name="atlop", method="atlop", repository="https://github.com/wzhouad/ATLOP",
        files="`atlop-bert-base` and `atlop-roberta` (release 1.0 of the repository)",
        license="none stated in the repository (ask the authors before redistributing the weights)",
        paper_scores=(("BERT-base, DocRED", "dev", 59.22, 61.09), ("BERT-base, DocRED", "test", 59.31, 61.30),
                      ("RoBERTa-large, DocRED", "dev", 61.32, 63.18), ("RoBERTa-large, DocRED", "test", 61.39, 63.40)),
        options={**_RELEASED_COMMON, "context_epsilon": 1e-5},
    ),
    "dreeam": ReleasedSource(
        name="dreeam", method="dreeam", repository="https://github.com/YoumiMa/dreeam",
        files="`{bert,roberta}_{teacher,student}_best.ckpt` (linked from the repository's README)",
        license="MIT (the repository's LICENSE)",
        paper_scores=(("RoBERTa-large, Re-DocRED, no distant data", "test", 79.66, 80.73),
                      ("RoBERTa-large, DocRED", "test", 65.47, 67.53)),
        options={**_RELEASED_COMMON, "context_epsilon": 1e-30, "context_layers": 3, "evidence_threshold": 0.2},
    ),
    "kd-docre": ReleasedSource(
        name="kd-docre", method="kd-docre", repository="https://github.com/tonytan48/KD-DocRE",
        files="one `.pt` per training stage (the Google Drive folder linked from the repository's README)",
        license="none stated in the repository (ask the authors before redistributing the weights)",
        paper_scores=(("BERT-base, DocRED, no distant data", "dev", 60.08, 62.03),
                      ("BERT-base, DocRED, no distant data", "test", 60.04, 62.08),
                      ("BERT-base, DocRED, distillation", "test", 62.56, 64.76),
                      ("RoBERTa-large, DocRED, no distant data", "test", 62.57, 64.28),
                      ("RoBERTa-large, DocRED, distillation", "dev", 65.27, 67.12),
                      ("RoBERTa-large, DocRED, distillation", "test", 65.24, 67.28)),
        # The released LOP sums q over heads and adds 1e-10: context_epsilon (per head) is set at conversion.
        options={**_RELEASED_COMMON, "axial_attention": True, "axial_network": "released", "loss": "afl",
                 "focal_positive_weight": "released_code", "axial_heads": 8, "axial_table_size": 42},
        dropped=("bilinear.", "teacher_model."),
        renames=(("head_extractor.", "head.head_extractor."), ("tail_extractor.", "head.tail_extractor."),
                 ("projection.", "head.bilinear."), ("classifier.", "head.classifier."),
                 ("axial_transformer.", "head.axial_transformer.")),
    ),
}


def released_end_tokens(encoder_config, tokenizer):
    """The tokens the released code closes the first window with: `[SEP]` for BERT, `</s></s>` for RoBERTa."""
    sep = tokenizer.sep_token_id
    if sep is None:
        return None
    return [sep, sep] if encoder_config.model_type in ("roberta", "xlm-roberta", "camembert") else [sep]


def load_released_state_dict(checkpoint) -> tuple[dict, list[str]]:
    """The state dict of a released file, read with `torch.load(weights_only=True)`, fp16 tensors (apex amp O1
    leftovers) made fp32. Returns (state dict, notes on what was changed)."""
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise CheckpointConversionError(f"{path}: no such file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, ValueError) as error:
        message = str(error).splitlines()[0][:300]
        raise CheckpointConversionError(
            f"{path}: refused: the file does not load with torch.load(weights_only=True) ({message}). hf_docre never "
            "unpickles arbitrary code; a released state dict of tensors loads, a pickled model object does not "
            "(re-save it as `torch.save(model.state_dict(), ...)` where you trust the file)."
        ) from None
    notes = []
    if isinstance(loaded, dict) and not any(isinstance(v, torch.Tensor) for v in loaded.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                notes.append(f"the weights are the file's {key!r} entry")
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointConversionError(f"{path}: not a state dict (a dict of tensors); got {type(loaded).__name__}")
    if all(key.startswith("module.") for key in loaded):  # saved from a DataParallel / DDP wrapper
        loaded = {key[len("module."):]: value for key, value in loaded.items()}
        notes.append("the 'module.' prefix of a DataParallel wrapper was removed")
    half = [k for k, v in loaded.items() if v.dtype in (torch.float16, torch.bfloat16)]
    if half:
        loaded = {k: v.float() if k in half else v for k, v in loaded.items()}
        notes.append(f"{len(half)} half-precision tensors (apex amp leftovers) converted to float32")
    return loaded, notes


def map_released_keys(state_dict, source: ReleasedSource) -> tuple[dict, list[str], list[str]]:
    """Rename released keys to hf_docre's. Returns (mapped state dict, keys dropped on purpose, unknown keys)."""
    mapped, dropped, unknown = {}, [], []
    for key, value in state_dict.items():
        if key.startswith("model."):
            inner = key[len("model."):]
            if inner.startswith("pooler.") or inner == "embeddings.position_ids":
                dropped.append(key)  # the pooler is never used; position_ids is a buffer of old transformers
            else:
                mapped["encoder." + inner] = value
        elif any(key.startswith(prefix) for prefix in source.dropped):
            dropped.append(key)
        else:
            for released, ours in source.renames:
                if key.startswith(released):
                    mapped[ours + key[len(released):]] = value
                    break
            else:
                unknown.append(key)
    return mapped, dropped, unknown


def _relations(relations, num_classes, path):
    if relations is None:
        if num_classes != len(DOCRED_RELATIONS) + 1:
            raise CheckpointConversionError(
                f"{path}: the classifier has {num_classes} classes, not DocRED's 97; pass the rel2id.json it was "
                "trained with (`relations=` / `--relations`)"
            )
        return list(DOCRED_RELATIONS)
    if isinstance(relations, (str, os.PathLike)):
        with open(relations, encoding="utf-8") as handle:
            relations = json.load(handle)
    if isinstance(relations, dict):  # rel2id: {name: column}
        order = sorted(relations.items(), key=lambda item: item[1])
        if [column for _, column in order] != list(range(len(order))):
            raise CheckpointConversionError("relations: a rel2id mapping must number its relations 0..R-1")
        names = [name for name, _ in order]
        if names[0] not in ("Na", "NA", "na"):
            raise CheckpointConversionError(f"relations: column 0 must be the no-relation class 'Na', got {names[0]!r}")
        relations = names[1:]
    relations = list(relations)
    if len(relations) + 1 != num_classes:
        raise CheckpointConversionError(
            f"{path}: the classifier has {num_classes} classes but the relations give {len(relations) + 1} (NA included)"
        )
    return relations


def convert_checkpoint(
    source: str,
    checkpoint: str | os.PathLike,
    encoder: str | os.PathLike,
    output: str | os.PathLike | None = None,
    relations=None,
    relation_names: dict | str | os.PathLike | None = None,
    tokenizer=None,
    command: str | None = None,
    log=None,
):
    """Convert a released checkpoint into a [`DocREForRelationExtraction`].

    Args:
        source: `"atlop"`, `"dreeam"` or `"kd-docre"` (see `SOURCES`).
        checkpoint: the released file (a `torch.save(state_dict)`), read with `weights_only=True`.
        encoder: Hub id or folder of the encoder it was trained from (its config and tokenizer; its weights are not
            read: the checkpoint has them).
        output: folder to save the model to (weights as safetensors, config, tokenizer, code, model card).
        relations: the `rel2id.json` it was trained with (path or dict), or a list of relation ids; default DocRED's.
        relation_names: `{relation id: name}` (e.g. DocRED's `rel_info.json`, path or dict) for readable output.
        command: the command line to record in the card.
        log: a function that takes a line of progress (default: print to stderr).
    Returns:
        the converted model (with `model.tokenizer`).
    """
    from transformers import AutoConfig

    from .configuration_docre import DocREConfig
    from .modeling_docre import DocREForRelationExtraction, load_tokenizer, special_token_layout

    log = log or (lambda line: print(line, file=sys.stderr))
    if source not in SOURCES:
        raise CheckpointConversionError(f"unknown source {source!r}; sources: {sorted(SOURCES)}")
    spec = SOURCES[source]
    path = os.fspath(checkpoint)
    if output is not None:
        output = os.fspath(output)
        if os.path.exists(output) and (not os.path.isdir(output) or os.listdir(output)):
            raise CheckpointConversionError(f"output {output!r} exists and is not an empty folder; choose a new one")
        parent = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(parent):
            raise CheckpointConversionError(f"output {output!r}: its parent folder {parent!r} does not exist")
    state_dict, notes = load_released_state_dict(path)
    for note in notes:
        log(f"{path}: {note}")
    mapped, dropped, unknown = map_released_keys(state_dict, spec)
    if unknown:
        raise CheckpointConversionError(
            f"{path}: unexpected keys for a {source} checkpoint: {', '.join(unknown[:10])}"
            + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        )
    for key in ("head.head_extractor.weight", "head.bilinear.weight"):
        if key not in mapped:
            raise CheckpointConversionError(f"{path}: missing key {key[len('head.'):]!r}: is this a {source} checkpoint?")
    emb_size, doubled_hidden = mapped["head.head_extractor.weight"].shape
    num_classes, bilinear_in = mapped["head.bilinear.weight"].shape
    if "head.classifier.weight" in mapped:  # KD-DocRE: the group bilinear projects to pair features first
        num_classes = mapped["head.classifier.weight"].shape[0]
    if bilinear_in % emb_size:
        raise CheckpointConversionError(f"{path}: bilinear.weight {tuple(mapped['head.bilinear.weight'].shape)} is not "
                                        f"[classes, {emb_size} x block size]")
    relations = _relations(relations, num_classes, path)
    if isinstance(relation_names, (str, os.PathLike)):
        with open(relation_names, encoding="utf-8") as handle:
            relation_names = json.load(handle)

    encoder_config = AutoConfig.from_pretrained(encoder)
    if doubled_hidden != 2 * encoder_config.hidden_size:
        raise CheckpointConversionError(
            f"{path}: head_extractor.weight has shape {(emb_size, doubled_hidden)}, but the encoder {str(encoder)!r} has "
            f"hidden size {encoder_config.hidden_size} (expected shape {(emb_size, 2 * encoder_config.hidden_size)}): "
            "wrong --encoder?"
        )
    if tokenizer is None:
        tokenizer = load_tokenizer(encoder)
    prefix, suffix = special_token_layout(tokenizer)
    options = dict(spec.options)
    if source == "kd-docre":
        layers = {key.split(".")[3] for key in mapped if key.startswith("head.axial_transformer.ffns.")}
        options["axial_layers"] = len(layers)
        options["context_epsilon"] = 1e-10 / encoder_config.num_attention_heads
    config = DocREConfig(
        encoder=encoder_config, relations=relations, relation_names=relation_names, method=spec.method,
        emb_size=int(emb_size), block_size=int(bilinear_in // emb_size), window_prefix_tokens=prefix,
        window_suffix_tokens=suffix, window_end_token_ids=released_end_tokens(encoder_config, tokenizer), **options,
    )
    model = DocREForRelationExtraction(config)
    expected = model.state_dict()
    problems = []
    for key, tensor in expected.items():
        if key not in mapped:
            released = key[len("encoder."):] if key.startswith("encoder.") else key[len("head."):]
            prefix_name = "model." if key.startswith("encoder.") else ""
            problems.append(f"missing key {prefix_name}{released!r} (expected shape {tuple(tensor.shape)})")
        elif tuple(mapped[key].shape) != tuple(tensor.shape):
            released = ("model." + key[len("encoder."):]) if key.startswith("encoder.") else key[len("head."):]
            problems.append(f"key {released!r} has shape {tuple(mapped[key].shape)}, expected {tuple(tensor.shape)}")
    extra = [key for key in mapped if key not in expected]
    problems += [f"unexpected key {('model.' + k[len('encoder.'):]) if k.startswith('encoder.') else k[len('head.'):]!r} "
                 f"(shape {tuple(mapped[k].shape)})" for k in extra]
    if problems:
        raise CheckpointConversionError(
            f"{path} does not fit a {source} model on the encoder {str(encoder)!r} ({len(problems)} problems; a shape "
            "mismatch usually means the wrong --encoder):\n  " + "\n  ".join(problems[:20])
            + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        )
    bad = [key for key, tensor in mapped.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise CheckpointConversionError(f"{path}: non-finite values (NaN or inf) in {', '.join(bad[:5])}")
    model.load_state_dict(mapped, strict=True)
    model.eval()
    model.config.encoder._name_or_path = str(encoder)
    model.tokenizer = tokenizer
    from .processing_docre import add_marker_tokens

    add_marker_tokens(tokenizer, model.config)
    if dropped:
        log(f"{path}: not converted (never read by the released forward): {', '.join(dropped)}")
    # Kept in config.json, so the card of a folder loaded later (and pushed) still names its source.
    model.config.converted_from = {
        "source": source, "checkpoint": os.path.basename(path), "encoder": str(encoder), "command": command,
        "notes": notes, "dropped": dropped,
    }
    if output is not None:
        from .model_card import DocREModelCardData, save_with_card

        card = DocREModelCardData(repo_id=f"your-org/{os.path.basename(os.path.normpath(output))}")
        save_with_card(model, output, card)
        log(f"saved {output}")
    return model
