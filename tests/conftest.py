"""Shared fixtures: tiny random BERT- and RoBERTa-style encoders with real fast tokenizers, and real documents."""

import json
import os
import re
import tempfile
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(os.environ.get("HF_DOCRE_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
REDOCRED_DEV = SHARED_DATA / "redocred" / "dev_revised.json"
REL_INFO = SHARED_DATA / "docred" / "rel_info.json"


@pytest.fixture(scope="session")
def redocred_documents():
    if not REDOCRED_DEV.exists():
        message = f"real Re-DocRED data not found at {REDOCRED_DEV} (set HF_DOCRE_SHARED_DATA to the data folder)"
        if os.environ.get("HF_DOCRE_SKIP_MISSING_DATA"):
            pytest.skip(message)
        pytest.fail(message)
    with open(REDOCRED_DEV) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def relation_info():
    with open(REL_INFO) as f:
        return json.load(f)


def _corpus_words(documents, limit=40):
    words = []
    for document in documents[:limit]:
        for sentence in document["sents"]:
            words.extend(sentence)
    return words


def build_bert_tokenizer(words):
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "*"]
    seen = set(vocab)
    pieces = sorted({w.lower() for w in words if re.fullmatch(r"[a-z]+", w.lower())})[:600]
    chars = sorted({c for w in words for c in w.lower()})
    for token in pieces + chars + ["##" + c for c in chars]:
        if token not in seen:
            seen.add(token)
            vocab.append(token)
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, model_max_length=128)


def build_roberta_tokenizer(words):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    trainer = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer.train_from_iterator([" ".join(words)], vocab_size=700, min_frequency=2, special_tokens=specials, show_progress=False)
    vocab = trainer.get_vocab()
    folder = tempfile.mkdtemp()
    trainer.save_model(folder)
    with open(os.path.join(folder, "merges.txt")) as f:
        merges = [tuple(line.split()) for line in f if line.strip() and not line.startswith("#version")]
    return RobertaTokenizer(vocab=vocab, merges=merges, add_prefix_space=True, model_max_length=128)


def build_encoder(kind, vocab_size, seed=0):
    from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

    torch.manual_seed(seed)
    common = dict(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )
    if kind == "bert":
        return BertModel(BertConfig(max_position_embeddings=128, **common))
    return RobertaModel(RobertaConfig(max_position_embeddings=130, pad_token_id=1, bos_token_id=0, eos_token_id=2, **common))


@pytest.fixture(scope="session")
def encoder_dirs(tmp_path_factory, redocred_documents):
    """{"bert": folder, "roberta": folder}: tiny random encoders saved with their tokenizers, like Hub checkpoints."""
    words = _corpus_words(redocred_documents)
    folders = {}
    for kind, build in (("bert", build_bert_tokenizer), ("roberta", build_roberta_tokenizer)):
        tokenizer = build(words)
        encoder = build_encoder(kind, len(tokenizer))
        folder = tmp_path_factory.mktemp(f"tiny-{kind}")
        encoder.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[kind] = str(folder)
    return folders


SMALL_HEAD = dict(emb_size=64, block_size=16)


def short_document(document, num_sentences=2):
    """The first sentences of a real document, with the entities and labels that live there."""
    keep = [i for i, mentions in enumerate(document["vertexSet"]) if all(m["sent_id"] < num_sentences for m in mentions)]
    new_id = {old: new for new, old in enumerate(keep)}
    return {
        "title": document["title"] + " (short)",
        "sents": document["sents"][:num_sentences],
        "vertexSet": [document["vertexSet"][i] for i in keep],
        "labels": [
            {**l, "h": new_id[l["h"]], "t": new_id[l["t"]], "evidence": [s for s in l.get("evidence") or [] if s < num_sentences]}
            for l in document["labels"]
            if l["h"] in new_id and l["t"] in new_id
        ],
    }
