"""DSDocRE's data side on real Re-DocRED documents: sampling invariants, scores and candidate pairs, and all the
stages end to end on a tiny model with the stock Trainer."""

import copy
import json

import numpy as np
import pytest
import torch
from transformers import Trainer, TrainingArguments

from hf_docre import DocREDataCollator, DocREFeaturizer, DocREForDenoisingPreTraining, DocREModel
from hf_docre.denoising import (
    DenoisingPreTrainingCollator,
    DocumentPairDataset,
    RankerCollator,
    build_fact_index,
    candidate_pair_counts,
    distant_stand_in,
    load_pair_scores,
    select_candidate_pairs,
    trusted_pairs,
    with_candidate_pairs,
    write_pair_scores,
)
from hf_docre.metrics import score_docred

SMALL = dict(emb_size=16, pretraining_relation_size=8)


@pytest.fixture(scope="module")
def pretraining_model(encoder_dirs, relation_info):
    torch.manual_seed(0)
    return DocREForDenoisingPreTraining.from_encoder(encoder_dirs["bert"], relations=list(relation_info), method="dsdocre", **SMALL)


@pytest.fixture(scope="module")
def corpus(redocred_documents):
    documents = distant_stand_in(redocred_documents[100:130], seed=1)
    trusted = [{(label["h"], label["t"]) for label in document["labels"]} for document in documents]  # all trusted
    return documents, trusted


def test_distant_stand_in_drops_and_adds_facts_of_plausible_types(redocred_documents):
    clean = redocred_documents[100:130]
    noisy = distant_stand_in(clean, drop=0.3, add=0.6, seed=1)
    true = {(d, l["h"], l["t"], l["r"]) for d, doc in enumerate(clean) for l in doc["labels"]}
    kept = {(d, l["h"], l["t"], l["r"]) for d, doc in enumerate(noisy) for l in doc["labels"]}
    assert 0.6 < len(true & kept) / len(true) < 0.8  # about 30% dropped
    false = kept - true
    assert 0.4 < len(false) / len(true & kept) < 0.7
    assert clean[0]["labels"] == redocred_documents[100]["labels"]  # the originals are untouched


def test_blanking_masking_and_candidates_follow_the_sampling_rules(pretraining_model, corpus):
    documents, trusted = corpus
    before = copy.deepcopy(documents)
    featurizer = DocREFeaturizer.from_model(pretraining_model)
    tokenizer = pretraining_model.tokenizer
    collator = DenoisingPreTrainingCollator(featurizer, documents, trusted, pretraining_model.config, blank_probability=0.3)
    blank_id, mask_id = tokenizer.convert_tokens_to_ids("[unused0]"), tokenizer.convert_tokens_to_ids("[unused200]")
    blanked = total = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        document = documents[seed % len(documents)]
        corrupted, masked, blanked_entities = collator.corrupt(document, rng)
        feature = featurizer(corrupted, with_labels=False)
        ids = feature["input_ids"]
        # Masked mentions: one mask token each, no markers around it, removed from their entity.
        assert len(masked) <= 3 and len({e for e, _ in masked}) == len(masked)
        assert sum(i == mask_id for i in ids) == len(masked)
        for e, mention in masked:
            assert len(document["vertexSet"][e]) >= 2
            assert len(corrupted["vertexSet"][e]) == len(document["vertexSet"][e]) - 1
            assert corrupted["sents"][mention["sent_id"]][mention["pos"][0]] == "[unused200]"
        for (e, _), position in zip(masked, np.flatnonzero(np.asarray(ids) == mask_id)):
            assert ids[position - 1] != tokenizer.convert_tokens_to_ids(f"[unused{2 * e + 1}]")
            assert ids[position + 1] != tokenizer.convert_tokens_to_ids(f"[unused{2 * e + 2}]")
        # Blanked entities: every remaining mention reads [Ei] [BLANK] [/Ei].
        for e in blanked_entities:
            start_id = tokenizer.convert_tokens_to_ids(f"[unused{2 * e + 1}]")
            for position in feature["mention_index"][e]:
                assert ids[position] == start_id and ids[position + 1] == blank_id
                assert ids[position + 2] == tokenizer.convert_tokens_to_ids(f"[unused{2 * e + 2}]")
        # Untouched entities keep their words.
        for e, mentions in enumerate(corrupted["vertexSet"]):
            if e not in blanked_entities:
                for m in mentions:
                    assert corrupted["sents"][m["sent_id"]][m["pos"][0]:m["pos"][1]] != ["[unused0]"]
        blanked += len(blanked_entities)
        total += len(document["vertexSet"])
    rate = blanked / total
    assert abs(rate - 0.3) < 3 * (0.3 * 0.7 / total) ** 0.5 + 0.02  # binomial bound (overlapping mentions are never blanked)
    assert documents == before  # nothing mutated


def test_batches_have_gold_exactly_once_and_are_deterministic(pretraining_model, corpus):
    documents, trusted = corpus
    featurizer = DocREFeaturizer.from_model(pretraining_model)
    index = build_fact_index(documents, trusted)
    dataset = DocumentPairDataset(documents, trusted, index, num_samples=24, seed=3)
    collator = DenoisingPreTrainingCollator(featurizer, documents, trusted, pretraining_model.config)
    examples = [dataset[i] for i in range(6)]
    batch = collator(examples)
    again = collator([dataset[i] for i in range(6)])
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    rows = [e["documents"][0] for e in examples] + [e["documents"][1] for e in examples]
    for r in range(12):
        for k in range(3):
            label = int(batch["masked_mention_labels"][r, k])
            if label != -100:
                candidates = batch["masked_mention_candidates"][r, k].tolist()
                assert len(set(candidates)) == 5 and batch["masked_mention_position"][r, k] >= 0
        labels = {(l["h"], l["t"]) for l in documents[rows[r]]["labels"]}
        for g in range(3):
            label = int(batch["detection_labels"][r, g])
            if label == -100:
                continue
            group = [tuple(p) for p in batch["detection_pairs"][r, g].tolist()]
            assert group[label] in trusted[rows[r]] and group[label] in labels
            assert all(p not in labels for i, p in enumerate(group) if i != label)
        label = int(batch["cross_entity_labels"][r])
        if label != -100:
            partner = rows[(r + 6) % 12]
            query_names = {m["name"].lower() for m in documents[rows[r]]["vertexSet"][int(batch["cross_entity_query"][r])]}
            gold = int(batch["cross_entity_candidates"][r, label])
            assert query_names & {m["name"].lower() for m in documents[partner]["vertexSet"][gold]}
    for b, example in enumerate(examples):
        if example["alignment"] is not None:
            for row, (mine, theirs) in ((b, example["alignment"]), (b + 6, example["alignment"][::-1])):
                label = int(batch["alignment_labels"][row])
                assert batch["alignment_query"][row].tolist() == mine
                assert batch["alignment_candidates"][row, label].tolist() == theirs
                assert sum(p == theirs for p in batch["alignment_candidates"][row].tolist()) == 1
        else:
            assert batch["alignment_labels"][b] == -100
    assert any(e["alignment"] is not None for e in examples)
    output = pretraining_model(**batch)
    assert torch.isfinite(output.loss) and output.relation_alignment_loss is not None


def test_candidate_selection_equals_a_loop_reference_and_dropped_facts_count_as_misses(redocred_documents):
    documents = redocred_documents[:12]
    rng = np.random.default_rng(0)
    rows = []
    for document in documents:
        n = len(document["vertexSet"])
        pairs = [[h, t] for h in range(n) for t in range(n) if h != t]
        order = rng.permutation(len(pairs))[:60]
        rows.append({"pairs": [pairs[i] for i in order], "scores": sorted(rng.random(len(order)).tolist(), reverse=True)})
    selected = select_candidate_pairs(rows, [len(d["vertexSet"]) for d in documents])
    for row, document, pairs in zip(rows, documents, selected):
        n = len(document["vertexSet"])
        assert pairs == row["pairs"][: min(2 * n, 60, n * (n - 1))]
    assert candidate_pair_counts([3, 40]).tolist() == [6, 60]
    restricted = with_candidate_pairs(documents, selected)
    for original, copy_ in zip(documents, restricted):
        assert all([l["h"], l["t"]] in copy_["candidate_pairs"] for l in copy_["labels"])
        assert len(copy_["labels"]) <= len(original["labels"])
    # Predicting every kept label exactly: recall = kept facts / all facts, as the released code counts.
    predictions = [[{"h_idx": l["h"], "t_idx": l["t"], "r": l["r"]} for l in d["labels"]] for d in restricted]
    scores = score_docred(predictions, documents)
    kept = sum(len({(l["h"], l["t"], l["r"]) for l in d["labels"]}) for d in restricted)
    gold = sum(len({(l["h"], l["t"], l["r"]) for l in d["labels"]}) for d in documents)
    assert scores["recall"] == pytest.approx(kept / gold) and kept < gold


@pytest.mark.slow
def test_every_stage_end_to_end_with_the_stock_trainer(encoder_dirs, relation_info, redocred_documents, tmp_path):
    annotated, distant_clean, evaluation = redocred_documents[140:146], redocred_documents[146:156], redocred_documents[156:159]
    distant = distant_stand_in(distant_clean, seed=2)
    args = dict(report_to="none", use_cpu=True, save_strategy="no", remove_unused_columns=False, learning_rate=3e-5,
                lr_scheduler_type="constant", max_grad_norm=1.0, logging_steps=1)

    # 1. The ranker on the annotated documents.
    torch.manual_seed(0)
    ranker = DocREForDenoisingPreTraining.from_encoder(encoder_dirs["bert"], relations=list(relation_info), method="dsdocre",
                                                       pretraining_tasks=["relation_detection"], **SMALL)
    featurizer = DocREFeaturizer.from_model(ranker)
    Trainer(model=ranker, args=TrainingArguments(tmp_path / "ranker", max_steps=3, per_device_train_batch_size=2, **args),
            train_dataset=annotated, data_collator=RankerCollator(featurizer)).train()
    ranker.save_pretrained(tmp_path / "ranker")

    # 2. Scores (resumable), trusted distant labels, candidate pairs.
    ranker = DocREForDenoisingPreTraining.from_pretrained(tmp_path / "ranker")
    distant_features = featurizer.featurize(distant, with_labels=False)
    folder = tmp_path / "scores"
    write_pair_scores(ranker, distant_features, folder, shard_size=4)
    (folder / "scores-00001.jsonl").unlink()  # a stopped run: the next call writes only what is missing
    first = (folder / "scores-00000.jsonl").stat().st_mtime_ns
    write_pair_scores(ranker, distant_features, folder, shard_size=4)
    assert (folder / "scores-00000.jsonl").stat().st_mtime_ns == first
    rows = load_pair_scores(folder)
    assert [row["index"] for row in rows] == list(range(len(distant)))
    assert all(row["scores"] == sorted(row["scores"], reverse=True) for row in rows)
    trusted = trusted_pairs(rows, k=20)

    # 3. Pre-training on document pairs, from the plain encoder.
    torch.manual_seed(0)
    model = DocREForDenoisingPreTraining.from_encoder(encoder_dirs["bert"], relations=list(relation_info), method="dsdocre", **SMALL)
    dataset = DocumentPairDataset(distant, trusted, build_fact_index(distant, trusted), num_samples=8, seed=0)
    collator = DenoisingPreTrainingCollator(DocREFeaturizer.from_model(model), distant, trusted, model.config)
    result = Trainer(model=model, args=TrainingArguments(tmp_path / "pretrain", max_steps=4, per_device_train_batch_size=2,
                                                         gradient_accumulation_steps=2, **args),
                     train_dataset=dataset, data_collator=collator).train()
    assert np.isfinite(result.training_loss)
    model.save_pretrained(tmp_path / "pretrain")

    # 4. Fine-tuning on the ranker's candidate pairs, from the pre-trained encoder.
    finetuned = DocREModel.from_pretrained(tmp_path / "pretrain")
    assert torch.equal(finetuned.encoder.embeddings.word_embeddings.weight, model.encoder.embeddings.word_embeddings.weight)
    train_rows = load_pair_scores(write_pair_scores(ranker, featurizer.featurize(annotated, with_labels=False), tmp_path / "train-scores"))
    train = with_candidate_pairs(annotated, select_candidate_pairs(train_rows, [len(d["vertexSet"]) for d in annotated]))
    features = DocREFeaturizer.from_model(finetuned).featurize(train)
    Trainer(model=finetuned, args=TrainingArguments(tmp_path / "finetune", max_steps=2, per_device_train_batch_size=2,
                                                    label_names=["labels"], **args),
            train_dataset=features, data_collator=DocREDataCollator.from_model(finetuned)).train()
    eval_rows = load_pair_scores(write_pair_scores(ranker, featurizer.featurize(evaluation, with_labels=False), tmp_path / "eval-scores"))
    candidates = select_candidate_pairs(eval_rows, [len(d["vertexSet"]) for d in evaluation])
    eval_features = DocREFeaturizer.from_model(finetuned).featurize(with_candidate_pairs(evaluation, candidates), with_labels=False)
    batch = DocREDataCollator.from_model(finetuned)(eval_features)
    with torch.no_grad():
        predicted = finetuned.eval().decode(finetuned(**batch).logits)
    assert predicted.shape[1] == max(len(c) for c in candidates)
    json.dumps(select_candidate_pairs(eval_rows, [len(d["vertexSet"]) for d in evaluation]))  # plain lists


def test_pretraining_gradient_accumulation_equals_one_large_batch(pretraining_model, corpus, tmp_path):
    """Two micro-batches of one example each (accumulated) make the same step as one batch of both. Each
    micro-batch's task terms are means over its own valid rows (as the released code's loss / 8), so the two
    examples are the same document pair here: the row counts then match and the step must be identical."""
    documents, trusted = corpus
    dataset = DocumentPairDataset(documents, trusted, build_fact_index(documents, trusted), num_samples=1, seed=5)
    example = dataset[0]
    collator = DenoisingPreTrainingCollator(DocREFeaturizer.from_model(pretraining_model), documents, trusted,
                                            pretraining_model.config)
    start = {k: v.clone() for k, v in pretraining_model.state_dict().items()}
    steps = {}
    for name, batch_size, accumulation in (("accumulated", 1, 2), ("one batch", 2, 1)):
        pretraining_model.load_state_dict(start)
        for module in pretraining_model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        args = TrainingArguments(tmp_path / name, per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
                                 max_steps=1, learning_rate=0.1, lr_scheduler_type="constant", report_to="none", use_cpu=True,
                                 save_strategy="no", remove_unused_columns=False, max_grad_norm=0)
        optimizer = torch.optim.SGD(pretraining_model.parameters(), lr=0.1)
        Trainer(model=pretraining_model, args=args, train_dataset=[example, example], data_collator=collator,
                optimizers=(optimizer, None)).train()
        steps[name] = {k: v.clone() for k, v in pretraining_model.state_dict().items()}
    pretraining_model.load_state_dict(start)
    moved = [k for k in start if not torch.equal(start[k], steps["one batch"][k])]
    assert moved
    for key in moved:
        torch.testing.assert_close(steps["accumulated"][key], steps["one batch"][key], atol=1e-6, rtol=1e-5, msg=key)


@pytest.mark.slow
def test_run_dsdocre_stages_then_run_docre_on_candidate_pairs(encoder_dirs, redocred_documents, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from conftest import REL_INFO

    examples = Path(__file__).resolve().parents[1] / "examples"
    (tmp_path / "annotated.json").write_text(json.dumps(redocred_documents[160:166]))
    (tmp_path / "distant.json").write_text(json.dumps(distant_stand_in(redocred_documents[166:176], seed=0)))
    (tmp_path / "dev.json").write_text(json.dumps(redocred_documents[176:179]))
    out = tmp_path / "out"
    command = [sys.executable, str(examples / "run_dsdocre.py"), "--model_name_or_path", encoder_dirs["bert"],
               "--relations_file", str(REL_INFO), "--train_file", str(tmp_path / "annotated.json"),
               "--distant_file", str(tmp_path / "distant.json"), "--validation_file", str(tmp_path / "dev.json"),
               "--output_dir", str(out), "--ranker_epochs", "1", "--pretrain_steps", "2", "--gradient_accumulation_steps", "2",
               "--use_cpu", "--config_overrides", "emb_size=16,pretraining_relation_size=8"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"ranker", "scores", "candidates", "pretrain"} <= {p.name for p in out.iterdir()}
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)  # every stage found: skipped
    assert rerun.returncode == 0 and "Ranker found" in rerun.stderr and "Pre-trained model found" in rerun.stderr
    finetune = [sys.executable, str(examples / "run_docre.py"), "--model_name_or_path", str(out / "pretrain"),
                "--candidate_pairs_dir", str(out / "candidates"), "--train_file", str(tmp_path / "annotated.json"),
                "--validation_file", str(tmp_path / "dev.json"), "--do_train", "--do_eval", "--output_dir", str(tmp_path / "ft"),
                "--max_steps", "2", "--use_cpu", "--report_to", "none", "--save_strategy", "no"]
    result = subprocess.run(finetune, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads((tmp_path / "ft" / "eval_results.json").read_text())
    gold = sum(len({(l["h"], l["t"], l["r"]) for l in d["labels"]}) for d in redocred_documents[176:179])
    assert evaluation["eval_num_gold"] == gold  # pairs outside the candidates still count as misses
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["method"] == "dsdocre"
