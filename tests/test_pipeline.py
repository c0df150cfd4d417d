import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import SMALL_HEAD
from datasets import Dataset
from transformers import pipeline

from hf_docre import DocREModel, SpanAlignmentError, text_to_document

TEXT = "Alan Turing was born in London. He later worked at the University of Manchester."
ENTITIES = [
    {"mentions": [[0, 11], [32, 34]], "type": "PER"},
    {"mentions": [[24, 30]], "type": "LOC"},
    {"mentions": [[55, 79]], "type": "ORG", "name": "University of Manchester"},
]


@pytest.fixture(scope="module")
def model(encoder_dirs, relation_info):
    torch.manual_seed(0)
    return DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), relation_names=relation_info, **SMALL_HEAD)


@pytest.fixture(scope="module")
def pipe(model):
    return pipeline("doc-relation-extraction", model=model, max_relations_per_pair=2)


def test_text_input_is_aligned_to_words():
    document = text_to_document(TEXT, ENTITIES)
    assert document["sents"][0] == ["Alan", "Turing", "was", "born", "in", "London", "."]
    assert document["offsets"]["mentions"][0] == [[0, 11], [32, 34]] and document["offsets"]["sentences"][1] == [32, 80]
    assert document["vertexSet"][0] == [
        {"name": "Alan Turing", "pos": [0, 2], "sent_id": 0, "type": "PER"},
        {"name": "He", "pos": [0, 1], "sent_id": 1, "type": "PER"},
    ]
    assert document["vertexSet"][2][0]["name"] == "University of Manchester" and document["vertexSet"][2][0]["pos"] == [5, 8]


def test_unaligned_span_is_an_error_or_snapped_on_request():
    bad = [{"mentions": [[1, 11]], "type": "PER"}, {"mentions": [[24, 30]], "type": "LOC"}]  # "lan Turing"
    with pytest.raises(SpanAlignmentError, match=r"entities\[0\]\.mentions\[0\] = \[1, 11\) \('lan Turing'\).*\[0, 11\]"):
        text_to_document(TEXT, bad)
    snapped = text_to_document(TEXT, bad, snap_spans=True)
    assert snapped["vertexSet"][0][0]["name"] == "Alan Turing"
    with pytest.raises(SpanAlignmentError, match="covers no word"):
        text_to_document(TEXT, [{"mentions": [[11, 12]]}])


def check_output(relations, document_entities, config):
    for item in relations:
        assert {"head", "tail", "relation", "relation_id", "score", "sentences"} <= set(item)
        assert set(item) - {"head", "tail", "relation", "relation_id", "score", "sentences"} <= {"context", "sentence_spans"}
        for side in ("head", "tail"):
            assert set(item[side]) == {"index", "name", "type", "mentions"} and item[side]["mentions"]
            assert set(item["sentences"]) >= {m["sent_id"] for m in item[side]["mentions"]}
        assert item["relation_id"] in config.label2id and item["relation_id"] != "NA"
        assert item["relation"] == config.relation_names[item["relation_id"]]
        assert 0.5 < item["score"] <= 1.0  # ATL: the relation's logit beats the threshold's
        assert item["head"]["index"] != item["tail"]["index"] and item["head"]["index"] < document_entities
    assert [x["score"] for x in relations] == sorted((x["score"] for x in relations), reverse=True)
    per_pair = {}
    for item in relations:
        key = (item["head"]["index"], item["tail"]["index"])
        per_pair[key] = per_pair.get(key, 0) + 1
    assert max(per_pair.values(), default=0) <= 2


def test_both_input_forms(pipe, model, redocred_documents):
    document = redocred_documents[0]
    relations = pipe(document)
    assert isinstance(relations, list) and relations
    check_output(relations, len(document["vertexSet"]), model.config)
    text_relations = pipe({"text": TEXT, "entities": ENTITIES}, return_context=True)
    check_output(text_relations, 3, model.config)
    assert text_relations[0]["head"]["name"] in ("Alan Turing", "London", "University of Manchester")
    context = text_relations[0]["context"]
    assert 0 < len(context) <= 5 and all(c["weight"] > 0 for c in context)


def test_batching_list_and_dataset_equal_one_by_one(pipe, redocred_documents):
    documents = redocred_documents[:5]
    one_by_one = [pipe(d) for d in documents]
    batched = pipe(documents, batch_size=3)
    dataset = Dataset.from_list(documents)
    from_dataset = pipe(dataset, batch_size=2)
    for single, in_batch, in_dataset in zip(one_by_one, batched, from_dataset):
        assert [(x["head"]["index"], x["tail"]["index"], x["relation_id"]) for x in single] == [
            (x["head"]["index"], x["tail"]["index"], x["relation_id"]) for x in in_batch
        ]
        assert [x["score"] for x in single] == pytest.approx([x["score"] for x in in_batch], abs=1e-5)
        assert [x["relation_id"] for x in in_dataset] == [x["relation_id"] for x in in_batch]


@pytest.mark.slow
def test_remote_code_pipeline_from_a_saved_folder(model, pipe, tmp_path):
    folder = tmp_path / "atlop-tiny"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"]["doc-relation-extraction"]["impl"] == "pipeline_docre.DocumentRelationExtractionPipeline"
    assert {"pipeline_docre.py", "processing_docre.py", "losses_docre.py", "text_docre.py"} <= set(os.listdir(folder))
    # With hf_docre installed, the saved folder works in-process without remote code, and saving did not change
    # the live model's config (custom_pipelines is only in config.json).
    assert not hasattr(model.config, "custom_pipelines")
    reloaded = pipeline("doc-relation-extraction", model=DocREModel.from_pretrained(folder), max_relations_per_pair=2)
    assert type(reloaded).__module__ == "hf_docre.pipeline_docre"
    # A folder path works too, without trust_remote_code.
    by_path = pipeline("doc-relation-extraction", model=str(folder))
    assert type(by_path).__module__ == "hf_docre.pipeline_docre"
    assert not hasattr(by_path.model.config, "custom_pipelines")
    torch.set_num_threads(1)
    expected = pipe({"text": TEXT, "entities": ENTITIES})
    assert [x["relation_id"] for x in reloaded({"text": TEXT, "entities": ENTITIES})] == [x["relation_id"] for x in expected]
    torch.set_num_threads(os.cpu_count() or 1)
    assert_remote_pipeline_matches(folder, tmp_path, expected, "max_relations_per_pair=2")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["two-step", "kd-docre"])
def test_remote_code_pipeline_for_other_methods(encoder_dirs, relation_info, tmp_path, method):
    torch.manual_seed(0)
    head = {} if method == "two-step" else SMALL_HEAD
    model = DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), method=method, **head)
    if method == "two-step":
        with torch.no_grad():
            model.head.existence_bilinear.bias.fill_(5.0)  # step 1 accepts every pair: step 2 then names relations
    folder = tmp_path / method
    model.save_pretrained(folder)
    torch.set_num_threads(1)
    expected = pipeline("doc-relation-extraction", model=model)({"text": TEXT, "entities": ENTITIES})
    assert expected
    torch.set_num_threads(os.cpu_count() or 1)
    assert_remote_pipeline_matches(folder, tmp_path, expected)


def assert_remote_pipeline_matches(folder, tmp_path, expected, options=""):
    """Run `pipeline(model=folder, trust_remote_code=True)` in a process where hf_docre cannot be imported and compare
    its relations and scores with `expected`."""
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["hf_docre"] = None
        import torch
        torch.set_num_threads(1)
        from transformers import pipeline
        pipe = pipeline(model={str(folder)!r}, trust_remote_code=True, {options})
        assert type(pipe).__name__ == "DocumentRelationExtractionPipeline", type(pipe)
        raw = pipe({TEXT!r}, recognizer="rules", threshold=0.0, html="page.html")  # raw text and the picture, remote code only
        assert raw and open("page.html").read().count('class="docre-doc"') == 1
        print("RESULT" + json.dumps(pipe({{"text": {TEXT!r}, "entities": {ENTITIES!r}}})))
        """
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.split("RESULT", 1)[1])
    assert [(x["head"]["index"], x["tail"]["index"], x["relation_id"]) for x in remote] == [
        (x["head"]["index"], x["tail"]["index"], x["relation_id"]) for x in expected
    ]
    assert [x["score"] for x in remote] == pytest.approx([x["score"] for x in expected], abs=1e-5)


def test_a_folder_without_tokenizer_files_says_so(model, tmp_path):
    folder = tmp_path / "no-tokenizer"
    model.save_pretrained(folder)
    for name in os.listdir(folder):  # keep tokenizer_config.json: it alone used to give a 5-token tokenizer
        if name in ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "special_tokens_map.json"):
            os.remove(folder / name)
    reloaded = DocREModel.from_pretrained(folder)
    assert reloaded.tokenizer is None
    with pytest.raises(ValueError, match="needs the model's tokenizer.*tokenizer="):
        pipeline("doc-relation-extraction", model=reloaded)
    assert pipeline("doc-relation-extraction", model=reloaded, tokenizer=model.tokenizer)({"text": TEXT, "entities": ENTITIES}) is not None


def test_max_sentence_distance_scores_only_nearby_pairs(redocred_documents, encoder_dirs, relation_info):
    from transformers import pipeline

    from hf_docre import DocREModel
    from hf_docre.pipeline_docre import nearby_pairs

    torch.manual_seed(0)
    model = DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), emb_size=64, block_size=16)
    pipe = pipeline("doc-relation-extraction", model=model, tokenizer=model.tokenizer)
    document = redocred_documents[0]
    sentences = [{m["sent_id"] for m in mentions} for mentions in document["vertexSet"]]

    def gap(h, t):
        return min(abs(a - b) for a in sentences[h] for b in sentences[t])

    everything = pipe(document, threshold=0.0)
    for distance in (0, 1, 3):
        near = pipe(document, threshold=0.0, max_sentence_distance=distance)
        assert near and all(gap(r["head"]["index"], r["tail"]["index"]) <= distance for r in near)
        kept = {(r["head"]["index"], r["tail"]["index"], r["relation_id"]) for r in near}
        expected = {(r["head"]["index"], r["tail"]["index"], r["relation_id"]) for r in everything
                    if gap(r["head"]["index"], r["tail"]["index"]) <= distance}
        assert kept == expected  # the same relations, the distant ones gone
        pairs = nearby_pairs(document, distance)
        assert sorted(map(tuple, pairs)) == sorted((h, t) for h in range(len(sentences)) for t in range(len(sentences))
                                                   if h != t and gap(h, t) <= distance)
    far = {"title": "far", "sents": [["Alice", "."], ["x", "."], ["x", "."], ["Bob", "."]],
           "vertexSet": [[{"name": "Alice", "sent_id": 0, "pos": [0, 1], "type": "PER"}],
                         [{"name": "Bob", "sent_id": 3, "pos": [0, 1], "type": "PER"}]]}
    assert pipe(far, threshold=0.0, max_sentence_distance=1) == []  # no pair near enough: nothing scored
    with pytest.raises(ValueError, match="max_sentence_distance must be an int >= 0"):
        pipe(document, max_sentence_distance=-1)
