import copy
import json
import warnings
import zipfile

import datasets
import pytest

from hf_docre.data import (
    DocREInputError,
    load_docred,
    parse_pubtator_line,
    publish_dataset,
    read_pubtator_file,
    to_docred_json,
    write_submission,
)
from hf_docre.data.builder import DOCRED_URLS
from hf_docre.metrics import score_docred

from conftest import REDOCRED_DEV


def test_redocred_dev_round_trips_exactly(tmp_path, redocred_documents):
    dev = load_docred("redocred", data_files={"dev": str(REDOCRED_DEV)}, split="dev", cache_dir=str(tmp_path))
    assert len(dev) == 500
    assert dev.features["vertexSet"].feature.feature["sent_id"] == datasets.Value("int32")
    for row, document in zip(dev, redocred_documents):
        assert to_docred_json(row) == document


def _write(tmp_path, documents, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(documents))
    return str(path)


BAD = [
    ("mention outside its sentence", lambda d: d["vertexSet"][1][0].__setitem__("pos", [0, 500]), "vertexSet[1][0].pos"),
    ("sent_id out of range", lambda d: d["vertexSet"][2][0].__setitem__("sent_id", 40), "vertexSet[2][0].sent_id"),
    ("entity with no mentions", lambda d: d["vertexSet"].__setitem__(0, []), "vertexSet[0]"),
    ("label h out of range", lambda d: d["labels"][2].__setitem__("h", 99), "labels[2].h"),
    ("label h == t", lambda d: d["labels"][0].__setitem__("t", d["labels"][0]["h"]), "labels[0]"),
    ("unknown relation", lambda d: d["labels"][1].__setitem__("r", "P000"), "labels[1].r"),
    ("empty document", lambda d: d.__setitem__("sents", []), "sents"),
    ("no entities", lambda d: (d.__setitem__("vertexSet", []), d.__setitem__("labels", [])), "vertexSet"),
]


@pytest.mark.parametrize("what, mutate, field", BAD, ids=[b[0] for b in BAD])
def test_strict_mode_raises_on_the_first_bad_document(tmp_path, redocred_documents, relation_info, what, mutate, field):
    documents = copy.deepcopy(redocred_documents[:4])
    mutate(documents[2])
    path = _write(tmp_path, documents)
    with pytest.raises(DocREInputError) as info:
        load_docred("json", data_files={"train": path}, cache_dir=str(tmp_path / "cache"), relation_names=relation_info)
    message = str(info.value)
    assert repr(documents[2]["title"]) in message and "(index 2)" in message and field in message and "split 'train'" in message


def test_lenient_mode_keeps_every_good_document(tmp_path, redocred_documents, relation_info):
    documents = copy.deepcopy(redocred_documents[:6])
    documents[1]["vertexSet"][0][0]["pos"] = [3, 1000]
    documents[4]["labels"][0]["r"] = "P000"
    path = _write(tmp_path, documents)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = load_docred("json", data_files={"train": path}, split="train", cache_dir=str(tmp_path / "cache"),
                           validation="lenient", relation_names=relation_info)
    assert [row["title"] for row in kept] == [documents[i]["title"] for i in (0, 2, 3, 5)]
    message = " ".join(str(w.message) for w in caught)
    assert "skipped 2 bad documents, kept 4" in message
    assert "vertexSet[0][0].pos" in message and "unknown relation 'P000'" in message


def test_test_split_without_labels(tmp_path, redocred_documents):
    unlabeled = [{k: v for k, v in d.items() if k != "labels"} for d in redocred_documents[:3]]
    path = _write(tmp_path, unlabeled, "test.json")
    test = load_docred("json", data_files={"test": path}, split="test", cache_dir=str(tmp_path / "cache"))
    assert all(row["labels"] is None for row in test)
    assert [to_docred_json(row) for row in test] == unlabeled


def test_official_files_are_downloaded_through_the_download_manager(tmp_path, redocred_documents, relation_info, monkeypatch):
    """No network here: the download manager is stubbed at its boundary and must be asked for the official files."""
    local = {url: _write(tmp_path, redocred_documents[i * 2 : i * 2 + 2], f"{split}.json") for i, (split, url) in enumerate(DOCRED_URLS.items())}
    rel_info = tmp_path / "rel_info.json"
    rel_info.write_text(json.dumps(relation_info))
    asked = []

    def fake_download(self, url_or_urls):
        asked.append(url_or_urls)
        if isinstance(url_or_urls, dict):
            return {k: local[v] for k, v in url_or_urls.items()}
        return str(rel_info)

    monkeypatch.setattr(datasets.DownloadManager, "download", fake_download)
    corpus = load_docred("docred", cache_dir=str(tmp_path / "cache"))
    assert asked[0] == DOCRED_URLS
    assert set(corpus) == {"train_annotated", "train_distant", "dev", "test"}
    assert all(len(split) == 2 for split in corpus.values())


CDR_LINE = "\t".join(
    [
        "123",
        "Aspirin causes ulcers .|Ulcers hurt patients .",
        # a positive pair, chemical (arg 1) -> disease (arg 2)
        "1:CID:2", "L2R", "CROSS", "NON-CROSS", "0", "D001241", "Aspirin", "Chemical", "0", "1", "0",
        "D014456", "ulcers|Ulcers", "Disease", "2:4", "3:5", "0:1",
        # a negative pair written right to left: arg 1 is the disease, arg 2 the chemical
        "1:NR:2", "R2L", "NON-CROSS", "CROSS", "0", "D010146", "hurt", "Disease", "5", "6", "1",
        "D001241", "Aspirin", "Chemical", "0", "1", "0",
        "not_include", "L2R", "X", "X", "0", "E1", "patients", "Other", "6", "7", "1", "E2", "x", "Other", "6", "7", "1",
    ]
)


def test_cdr_line_parses_into_docred_format(tmp_path, relation_info, encoder_dirs):
    document = parse_pubtator_line(CDR_LINE)
    assert document["title"] == "123"
    assert document["sents"] == [["Aspirin", "causes", "ulcers", "."], ["Ulcers", "hurt", "patients", "."]]
    chemical, disease, pain = document["vertexSet"]
    assert chemical == [{"name": "Aspirin", "pos": [0, 1], "sent_id": 0, "type": "Chemical"}]
    assert disease == [{"name": "ulcers", "pos": [2, 3], "sent_id": 0, "type": "Disease"}, {"name": "Ulcers", "pos": [0, 1], "sent_id": 1, "type": "Disease"}]
    assert pain == [{"name": "hurt", "pos": [1, 2], "sent_id": 1, "type": "Disease"}]
    assert document["labels"] == [{"h": 0, "t": 1, "r": "CID", "evidence": []}]  # NR pair: no label; not_include: skipped
    assert document["candidate_pairs"] == [[0, 1], [0, 2]]  # both candidate pairs, chemical -> disease
    path = tmp_path / "train_filter.data"
    path.write_text(CDR_LINE + "\n" + CDR_LINE + "\n")  # a repeated PMID is read once
    assert read_pubtator_file(path) == [document]
    corpus = load_docred("cdr", data_files={"train": str(path)}, split="train", cache_dir=str(tmp_path / "cache"))
    assert to_docred_json(corpus[0]) == document
    # A model scores only the candidate pairs.
    from hf_docre import DocREFeaturizer
    from hf_docre.modeling_docre import load_tokenizer

    featurizer = DocREFeaturizer(load_tokenizer(encoder_dirs["bert"]), {"NA": 0, "CID": 1})
    feature = featurizer(to_docred_json(corpus[0]))
    assert feature["pair_index"] == [[0, 1], [0, 2]] and feature["labels"] == [[0, 1]]
    with pytest.raises(ValueError, match="17 fields per pair"):
        parse_pubtator_line("1\ttext\tonly-three-fields")


def test_submission_writer(tmp_path, redocred_documents):
    documents = redocred_documents[:2]
    per_document = [[{"h_idx": l["h"], "t_idx": l["t"], "r": l["r"], "evidence": l["evidence"]} for l in d["labels"]] for d in documents]
    json_path, zip_path = write_submission(per_document, str(tmp_path / "out"), documents=documents)
    records = json.loads(open(json_path).read())
    assert len(records) == sum(len(d["labels"]) for d in documents)
    assert set(records[0]) == {"title", "h_idx", "t_idx", "r", "evidence"}
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.namelist() == ["result.json"]
        assert json.loads(archive.read("result.json")) == records
    assert score_docred(records, documents)["f1"] == 1.0


class RecordingApi:
    """Stands in for huggingface_hub.HfApi at the upload boundary."""

    def __init__(self):
        self.calls, self.files = [], {}

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, repo_id, folder_path, **kwargs):
        import os

        self.calls.append(("upload_folder", repo_id, kwargs))
        for root, _, names in os.walk(folder_path):
            for name in names:
                full = os.path.join(root, name)
                self.files[os.path.relpath(full, folder_path)] = open(full, "rb").read()
        return "commit"


def test_publish_writes_parquet_splits_and_a_card(tmp_path):
    corpus = load_docred("redocred", data_files={"dev": str(REDOCRED_DEV)}, cache_dir=str(tmp_path / "cache"))
    api = RecordingApi()
    assert publish_dataset(corpus, "org/redocred-sample", api=api) == "commit"
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[1][2]["repo_type"] == "dataset"
    assert set(api.files) == {"README.md", "data/dev.parquet"}
    assert b"path: data/dev.parquet" in api.files["README.md"]
    assert b"| dev | 500 |" in api.files["README.md"] and b"load_dataset(\"org/redocred-sample\")" in api.files["README.md"]
    parquet = tmp_path / "dev.parquet"
    parquet.write_bytes(api.files["data/dev.parquet"])
    reloaded = datasets.load_dataset("parquet", data_files=str(parquet), split="train", cache_dir=str(tmp_path / "pq"))
    assert reloaded[7] == corpus["dev"][7]
