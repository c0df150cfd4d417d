"""Knowledge distillation for DocRE (KD-DocRE, Tan et al. 2022, Sec. 2.2.3).

Three stages, each a stock-Trainer run:

1. train a teacher on the annotated data (any DocRE model, e.g. `method="kd-docre"`);
2. `write_teacher_logits(teacher, distant_features, folder)` stores the teacher's logits for every pair of the
   (distantly supervised) documents, next to their features, in parquet shards. It works shard by shard, so a
   stopped run resumes where it stopped, and nothing is held in memory: `load_teacher_logits(folder)` gives a
   memory-mapped `datasets.Dataset`. Train the student on it: the collator turns the stored `teacher_logits`
   column into a [B, P, R] tensor, the model adds the distillation loss (MSE by default, `config.distillation_loss`)
   to the relation loss on the distant labels (Eq. 13: L = L_KD + L_RE);
3. fine-tune the student on the annotated data (features without `teacher_logits`).

`examples/run_docre.py --teacher_model_name_or_path ... --teacher_logits_dir ...` runs stage 2 from the command line.
"""

import hashlib
import json
import os

import numpy as np
import torch

from .processing_docre import DocREDataCollator, num_feature_pairs

MANIFEST = "teacher_logits.json"


def _shard_path(folder, shard, num_shards):
    return os.path.join(folder, f"teacher-{shard:05d}-of-{num_shards:05d}.parquet")


def teacher_fingerprint(teacher):
    """SHA-256 of the teacher's weights (names and bytes): a retrained teacher at the same path differs."""
    digest = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def features_fingerprint(features):
    """SHA-256 of what the teacher reads in each feature (title, tokens, mentions, pairs), in order: other
    documents of the same count differ."""
    digest = hashlib.sha256()
    for i in range(len(features)):
        row = features[i]
        content = [row.get(key) for key in ("title", "input_ids", "mention_index", "mention_end", "pair_index")]
        digest.update(json.dumps(content, separators=(",", ":")).encode())
    return digest.hexdigest()


def write_teacher_logits(teacher, features, output_dir, batch_size=8, shard_size=512, dtype="float16", progress=True,
                         overwrite=False, with_evidence=None):
    """Store a teacher's logits for every pair of `features`, with the features, as parquet shards.

    Args:
        teacher: a trained DocRE model (its tokenizer made `features`).
        features: a list or `datasets.Dataset` of DocRE features (from `DocREFeaturizer`), labels optional.
        output_dir: folder of the shards and a manifest. Shards already there are kept, and a shard in progress keeps
            its finished documents (the run resumes, redoing at most one batch). The manifest records fingerprints
            of the teacher's weights and of the features: a folder written for another teacher (even retrained at
            the same path), other documents, or another shard size is an error, unless `overwrite=True`, which
            deletes its shards and writes them anew. Under torchrun / accelerate launch each rank writes its
            contiguous shards (`corpus.run_shard_folder`); the folder is the one a single process writes.
        shard_size: documents per shard.
        dtype: `"float16"` (half the disk) or `"float32"`.
        with_evidence: also store `teacher_evidence`, each pair's localized-context weights over the tokens ([P * L]
            per document; DREEAM's self-training). Default: when the teacher's head learns from evidence.
    Returns:
        `load_teacher_logits(output_dir)` (on every rank: they wait for each other).
    """
    from datasets import Dataset, Features, List, Value

    from .corpus import decode_array, encode_array, run_shard_folder

    os.makedirs(output_dir, exist_ok=True)
    num_features = len(features)
    num_shards = max(1, -(-num_features // shard_size))
    evidence = bool(getattr(teacher.head, "needs_context_weights", False)) if with_evidence is None else bool(with_evidence)
    manifest = {
        "teacher": str(getattr(teacher.config, "_name_or_path", "")),
        "num_relations": teacher.config.num_relations,
        "num_features": num_features,
        "shard_size": shard_size,
        "num_shards": num_shards,
        "dtype": dtype,
        "with_evidence": evidence,
        "teacher_fingerprint": teacher_fingerprint(teacher),
        "features_fingerprint": features_fingerprint(features),
    }
    manifest_path = os.path.join(output_dir, MANIFEST)
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            existing = json.load(f)
        if "with_evidence" not in existing:  # manifests written before DREEAM's self-training
            existing["with_evidence"] = False
            with open(manifest_path, "w") as f:
                json.dump(existing, f, indent=2)

    collator = DocREDataCollator(teacher.tokenizer.pad_token_id if teacher.tokenizer is not None else 0, teacher.config.num_relations)
    device = next(teacher.parameters()).device
    stored_keys = ("labels", "teacher_logits", "teacher_evidence", "evidence_labels")

    def compute(indices):
        rows = [dict(features[i]) for i in indices]
        batch = collator([{k: v for k, v in row.items() if k not in stored_keys} for row in rows])
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.inference_mode():
            output = teacher(**batch, output_context_weights=evidence)
            logits = output.logits.float().cpu().numpy()
            weights = output.context_weights.float().cpu().numpy() if evidence else None
        records = []
        for b, row in enumerate(rows):
            pairs = num_feature_pairs(row)
            record = {"teacher_logits": encode_array(logits[b, :pairs].astype(dtype).reshape(-1))}
            if evidence:  # DREEAM's self-training: the pairs' context weights over the document's tokens
                record["teacher_evidence"] = encode_array(weights[b, :pairs, : len(row["input_ids"])].astype(dtype).reshape(-1))
            records.append(record)
        return records

    def write_shard(shard, records):
        start = shard * shard_size
        rows = []
        for offset, record in enumerate(records):
            row = dict(features[start + offset])
            row.update({key: decode_array(value) for key, value in record.items()})
            rows.append(row)
        keys = list(dict.fromkeys(key for row in rows for key in row))
        rows = [{key: row.get(key) for key in keys} for row in rows]
        path = _shard_path(output_dir, shard, num_shards)
        temporary = path + ".partial"
        Dataset.from_list(rows, features=_schema(keys, dtype, Features, List, Value)).to_parquet(temporary)
        os.replace(temporary, path)  # a shard is there whole or not at all

    def clear():
        for name in os.listdir(output_dir):
            if name.startswith("teacher-") and name.endswith((".parquet", ".partial")):
                os.remove(os.path.join(output_dir, name))

    was_training = teacher.training
    teacher.eval()
    try:
        run_shard_folder(
            output_dir, MANIFEST, manifest, num_features, shard_size, lambda shard: _shard_path(output_dir, shard, num_shards),
            compute, write_shard, length=lambda i: len(features[i]["input_ids"]), batch_size=batch_size, overwrite=overwrite,
            clear=clear, progress=progress, desc="teacher logits",
            mismatch=lambda differences: f"{output_dir} holds teacher logits of another run (they differ in {', '.join(differences)}); "
                                         "use an empty folder, or overwrite=True to write them anew.")
    finally:
        teacher.train(was_training)
    return load_teacher_logits(output_dir)  # every rank's shards are written once run_shard_folder returns


def _schema(keys, dtype, Features, List, Value):
    columns = {
        "title": Value("string"),
        "input_ids": List(Value("int32")),
        "mention_index": List(List(Value("int32"))),
        "mention_end": List(List(Value("int32"))),
        "pair_index": List(List(Value("int32"))),
        "labels": List(List(Value("int32"))),
        "teacher_logits": List(Value(dtype)),
        "teacher_evidence": List(Value(dtype)),
        "token_sentence": List(Value("int32")),
        "evidence_labels": List(List(Value("int32"))),
    }
    unknown = [key for key in keys if key not in columns]
    if unknown:
        raise ValueError(f"write_teacher_logits: unexpected feature columns {unknown}")
    return Features({key: columns[key] for key in keys})


def load_teacher_logits(output_dir, cache_dir=None):
    """The stored features with their `teacher_logits` column, as a memory-mapped `datasets.Dataset` in the
    original order. Raises if the run that wrote them has not finished."""
    from datasets import Dataset

    with open(os.path.join(output_dir, MANIFEST)) as f:
        manifest = json.load(f)
    paths = [_shard_path(output_dir, shard, manifest["num_shards"]) for shard in range(manifest["num_shards"])]
    missing = [os.path.basename(p) for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"{output_dir}: {len(missing)} shard(s) not written yet ({missing[:3]} ...); run write_teacher_logits again to finish")
    return Dataset.from_parquet(paths, cache_dir=cache_dir)


def teacher_logits_of(row, num_relations):
    """[P, R] float32 array of one stored row's teacher logits."""
    return np.asarray(row["teacher_logits"], dtype=np.float32).reshape(-1, num_relations)
