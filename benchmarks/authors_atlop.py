"""The authors' ATLOP code (github.com/wzhouad/ATLOP), run as it is, for side-by-side benchmarks.

Nothing of it is copied here: its own files are imported from a checkout, and what today's stack needs is supplied
from outside at run time:

- `prepro.py` opens `meta/rel2id.json` when it is imported: it is imported from a temporary folder that holds DocRED's
  `rel2id.json` ("Na" then the 96 relation ids in the released order).
- `ujson`, which `prepro.py` imports, falls back to the standard `json` when it is not installed.
- `model.py` imports `opt_einsum`, which is not one of hf_docre's dependencies: `pip install opt_einsum` first.
- transformers 5 returns attention weights only from eager attention: the encoder is loaded with
  `attn_implementation="eager"`, which is what transformers 3 ran for this code.
- `long_seq.py` reads the attentions as `output[-1][-1]`; transformers 5 puts an empty `cross_attentions` tuple last
  (transformers 3 left it out): a forward hook on the encoder drops it.
- transformers 5 tokenizers have no `build_inputs_with_special_tokens`, which `read_docred` calls: a wrapper adds
  it (one sequence: `[CLS] ids [SEP]`, RoBERTa's `<s> ids </s>`, as transformers 3 built it).
- `train.py` is not imported (it needs apex and wandb, and `transformers.optimization.AdamW`, which transformers 5
  removed). `training_step` below does what its loop does for one batch: forward, backward, gradient clipping at
  1.0, AdamW (`torch.optim.AdamW`, the same two learning-rate groups) and the linear schedule.

The same weights convert into hf_docre (`hf_docre.convert_checkpoint("atlop", ...)`), so `check_same_logits` can
show that both compute the same function before anything is timed.
"""

import contextlib
import importlib
import importlib.util
import json
import os
import sys
import tempfile

import torch

ATLOP_FILES = ("model.py", "long_seq.py", "losses.py", "prepro.py", "utils.py")


@contextlib.contextmanager
def _working_directory(path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def import_authors_atlop(checkout):
    """Import the checkout's `model`, `prepro` and `utils` modules. Returns them as a dict."""
    from hf_docre.conversion import DOCRED_RELATIONS

    checkout = os.path.abspath(checkout)
    missing = [name for name in ATLOP_FILES if not os.path.isfile(os.path.join(checkout, name))]
    if missing:
        raise FileNotFoundError(f"{checkout} is not a checkout of github.com/wzhouad/ATLOP: {', '.join(missing)} missing")
    try:
        import ujson  # noqa: F401
    except ImportError:
        sys.modules["ujson"] = json
    if importlib.util.find_spec("opt_einsum") is None:
        raise ModuleNotFoundError("the authors' model.py imports opt_einsum: `pip install opt_einsum` to time their code")
    clashing = [name for name in ("model", "long_seq", "losses", "prepro", "utils") if name in sys.modules]
    if clashing:
        raise RuntimeError(f"modules named {clashing} are already imported; import the authors' code in a fresh process")
    meta = tempfile.mkdtemp(prefix="atlop-meta-")
    os.makedirs(os.path.join(meta, "meta"))
    with open(os.path.join(meta, "meta", "rel2id.json"), "w") as f:
        json.dump({"Na": 0, **{relation: i + 1 for i, relation in enumerate(DOCRED_RELATIONS)}}, f)
    sys.path.insert(0, checkout)
    try:
        with _working_directory(meta):
            modules = {name: importlib.import_module(name) for name in ("model", "prepro", "utils")}
    finally:
        sys.path.remove(checkout)
    return modules


def _without_empty_cross_attentions(module, args, output):
    if getattr(output, "cross_attentions", None) == ():
        output["cross_attentions"] = None
        return type(output)(**{k: v for k, v in output.items() if v is not None})
    return output


def build_authors_model(modules, encoder, num_labels=97, max_labels_per_pair=4):
    """Their `DocREModel` around a transformers encoder, set up as `train.py` does. Returns (model, tokenizer)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = AutoConfig.from_pretrained(encoder, num_labels=num_labels)
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    config.cls_token_id = tokenizer.cls_token_id
    config.sep_token_id = tokenizer.sep_token_id
    config.transformer_type = config.model_type
    backbone = AutoModel.from_pretrained(encoder, config=config, attn_implementation="eager")
    backbone.register_forward_hook(_without_empty_cross_attentions)
    model = modules["model"].DocREModel(config, backbone, num_labels=max_labels_per_pair)
    return model, tokenizer


class _WithSpecialTokens:
    """A tokenizer with transformers 3's `build_inputs_with_special_tokens` for one sequence."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def build_inputs_with_special_tokens(self, token_ids):
        return [self._tokenizer.cls_token_id, *token_ids, self._tokenizer.sep_token_id]


def authors_features(modules, tokenizer, documents):
    """Their `read_docred` over DocRED-format documents (through a temporary file, as it reads a path)."""
    if not hasattr(tokenizer, "build_inputs_with_special_tokens"):
        tokenizer = _WithSpecialTokens(tokenizer)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(documents, f)
    try:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            return modules["prepro"].read_docred(f.name, tokenizer)
    finally:
        os.unlink(f.name)


def authors_batches(modules, features, batch_size):
    """Their `collate_fn` over consecutive features, as dicts of their model's inputs."""
    batches = []
    for start in range(0, len(features), batch_size):
        input_ids, attention_mask, labels, entity_pos, hts = modules["utils"].collate_fn(features[start : start + batch_size])
        batches.append({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                        "entity_pos": entity_pos, "hts": hts})
    return batches


def authors_optimizer(model, num_steps, learning_rate=5e-5, head_learning_rate=1e-4, warmup_ratio=0.06):
    """`train.py`'s optimizer and schedule: encoder at `learning_rate`, extractors and bilinear at 1e-4, eps 1e-6."""
    from transformers import get_linear_schedule_with_warmup

    new_layer = ("extractor", "bilinear")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in new_layer)]},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in new_layer)], "lr": head_learning_rate},
    ]
    optimizer = torch.optim.AdamW(groups, lr=learning_rate, eps=1e-6)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(num_steps * warmup_ratio), num_steps)
    return optimizer, scheduler


def training_step(model, optimizer, scheduler, batch, device, autocast_dtype=None):
    """One step of `train.py`'s loop (gradient accumulation 1, `max_grad_norm` 1.0). Returns the loss."""
    inputs = {**batch, "input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}
    with torch.autocast(torch.device(device).type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = model(**inputs)[0]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    model.zero_grad()
    return loss.detach()


def predict(model, batch, device, autocast_dtype=None):
    """Their evaluation forward: the 0/1 label matrix [pairs, 97] of one batch."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    inputs["input_ids"], inputs["attention_mask"] = inputs["input_ids"].to(device), inputs["attention_mask"].to(device)
    with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        return model(**inputs)[0]


def authors_logits(model, batch, device):
    """The bilinear's logits [pairs, 97] of one batch, read with a forward hook (their forward returns labels)."""
    captured = []
    handle = model.bilinear.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        predict(model, batch, device)
    finally:
        handle.remove()
    return captured[0]


def converted_model(model, encoder, relation_names=None):
    """The authors' model's weights converted into hf_docre (the released-checkpoint path), as a `DocREModel`."""
    from hf_docre.conversion import convert_checkpoint

    folder = tempfile.mkdtemp(prefix="atlop-state-")
    path = os.path.join(folder, "atlop.pt")
    torch.save(model.state_dict(), path)
    try:
        return convert_checkpoint("atlop", path, encoder=encoder, relation_names=relation_names, log=lambda line: None)
    finally:
        os.unlink(path)


def check_same_logits(modules, encoder, documents, device="cpu", atol=1e-4):
    """Their model (random head) and its hf_docre conversion on the same documents: returns the largest difference
    of the logits of the real pairs. Raises if it exceeds `atol`."""
    from hf_docre import DocREDataCollator, DocREFeaturizer
    from hf_docre.processing_docre import feature_pairs

    torch.manual_seed(0)
    model, tokenizer = build_authors_model(modules, encoder)
    model.to(device).eval()
    ours = converted_model(model, encoder).to(device).eval()
    their_features = authors_features(modules, tokenizer, documents)
    theirs = torch.cat([authors_logits(model, b, device) for b in authors_batches(modules, their_features, 4)])
    their_rows = {}  # (document, head, tail) -> row of `theirs` (their pairs: the labelled ones first)
    for d, feature in enumerate(their_features):
        for h, t in feature["hts"]:
            their_rows[d, h, t] = len(their_rows)
    features = DocREFeaturizer.from_model(ours).featurize(documents)
    collator = DocREDataCollator.from_model(ours)
    ours_rows, order = [], []
    with torch.no_grad():
        for start in range(0, len(features), 4):
            chunk = features[start : start + 4]
            batch = {k: v.to(device) for k, v in collator(chunk).items()}
            logits = ours(**{k: v for k, v in batch.items() if k != "labels"}).logits
            for b, feature in enumerate(chunk):
                for p, (h, t) in enumerate(feature_pairs(feature)):
                    ours_rows.append(logits[b, p])
                    order.append(their_rows[start + b, int(h), int(t)])
    if len(order) != len(their_rows):
        raise AssertionError(f"pairs differ: hf_docre scores {len(order)}, the authors' code {len(their_rows)}")
    ours_logits = torch.stack(ours_rows)
    theirs = theirs[torch.as_tensor(order)]
    difference = (ours_logits - theirs).abs().max().item()
    if difference > atol:
        raise AssertionError(f"the converted model's logits differ from the authors' code by {difference:.2e} (> {atol})")
    return difference
