import copy
import json
import warnings
import zipfile

import datasets
import pytest
from conftest import REDOCRED_DEV

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
    # faults that used to lose every document (lenient) or be silently changed by Arrow
    ("mention not a dict", lambda d: d["vertexSet"][1].__setitem__(0, "Paris"), "vertexSet[1][0]"),
    ("entity not a list", lambda d: d["vertexSet"].__setitem__(1, {"name": "x"}), "vertexSet[1]"),
    ("label not a dict", lambda d: d["labels"].__setitem__(0, [0, 1, "P17"]), "labels[0]"),
    ("pos as strings", lambda d: d["vertexSet"][0][0].__setitem__("pos", ["0", "1"]), "vertexSet[0][0].pos"),
    ("pos as floats", lambda d: d["vertexSet"][0][0].__setitem__("pos", [4.7, 5.7]), "vertexSet[0][0].pos"),
    ("pos as bools", lambda d: d["vertexSet"][0][0].__setitem__("pos", [False, True]), "vertexSet[0][0].pos"),
    ("evidence as a string", lambda d: d["labels"][0].__setitem__("evidence", "01"), "labels[0].evidence"),
    ("word as a list", lambda d: d["sents"][0].__setitem__(0, ["x", "y"]), "sents[0][0]"),
    ("word None", lambda d: d["sents"][0].__setitem__(1, None), "sents[0][1]"),
    ("lone surrogate", lambda d: d["sents"][0].__setitem__(0, "\ud800"), "sents[0][0]"),
    ("no title", lambda d: d.pop("title"), "title"),
    ("sents an int", lambda d: d.__setitem__("sents", 3), "sents"),
    ("labels not a list", lambda d: d.__setitem__("labels", {"h": 0}), "labels"),
]


@pytest.mark.parametrize("what, mutate, field", BAD, ids=[b[0] for b in BAD])
def test_strict_mode_raises_on_the_first_bad_document(tmp_path, redocred_documents, relation_info, what, mutate, field):
    documents = copy.deepcopy(redocred_documents[:4])
    mutate(documents[2])
    path = _write(tmp_path, documents)
    with pytest.raises(DocREInputError) as info:
        load_docred("json", data_files={"train": path}, cache_dir=str(tmp_path / "cache"), relation_names=relation_info)
    message = str(info.value)
    title = documents[2].get("title")
    assert (title is None or repr(title) in message) and "(index 2)" in message and field in message and "split 'train'" in message


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


def test_lenient_mode_keeps_good_documents_beside_every_kind_of_fault(tmp_path, redocred_documents, relation_info):
    documents = copy.deepcopy(redocred_documents[: len(BAD) + 6])
    for document, (_, mutate, _) in zip(documents[1:], BAD):
        mutate(document)
    good = documents[1 + len(BAD) :]
    good[0]["labels"] = None  # an unlabelled document is fine
    path = _write(tmp_path, documents)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = load_docred("json", data_files={"train": path}, split="train", cache_dir=str(tmp_path / "cache"),
                           validation="lenient", relation_names=relation_info)
    assert [row["title"] for row in kept] == [documents[0]["title"]] + [d["title"] for d in good]
    assert kept[1]["labels"] is None
    assert f"skipped {len(BAD)} bad documents" in " ".join(str(w.message) for w in caught)
    for row, document in zip(kept, [documents[0]] + good):  # values kept exactly
        assert to_docred_json(row)["vertexSet"] == document["vertexSet"]


def test_files_as_people_have_them(tmp_path, redocred_documents, relation_info):
    documents = redocred_documents[:3]
    options = dict(split="train", relation_names=relation_info)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(documents).encode())
    assert len(load_docred("json", data_files={"train": str(bom)}, cache_dir=str(tmp_path / "c1"), **options)) == 3
    lines = tmp_path / "docs.jsonl"
    lines.write_text("\n".join(json.dumps(d) for d in documents) + "\n{broken\n")
    with pytest.raises(DocREInputError, match="line 4"):
        load_docred("json", data_files={"train": str(lines)}, cache_dir=str(tmp_path / "c2"), **options)
    with pytest.warns(UserWarning, match="skipped 1 bad documents, kept 3"):
        kept = load_docred("json", data_files={"train": str(lines)}, cache_dir=str(tmp_path / "c3"), validation="lenient", **options)
    assert [row["title"] for row in kept] == [d["title"] for d in documents]
    top = tmp_path / "top.json"
    top.write_text(json.dumps({"data": documents}))
    with pytest.raises(DocREInputError, match="holds a JSON dict; expected a list"):
        load_docred("json", data_files={"train": str(top)}, cache_dir=str(tmp_path / "c4"), validation="lenient", **options)
    latin = tmp_path / "latin.json"
    cafe = {"title": "Caf\u00e9", "sents": [["Caf\u00e9", "Paris", "."]], "labels": [],
            "vertexSet": [[{"name": "Paris", "pos": [1, 2], "sent_id": 0, "type": "LOC"}]]}
    latin.write_bytes(json.dumps([cafe], ensure_ascii=False).encode("latin-1"))
    with pytest.raises(DocREInputError, match="not UTF-8"):
        load_docred("json", data_files={"train": str(latin)}, cache_dir=str(tmp_path / "c5"), **options)
    with pytest.raises(ValueError, match="'strict' or 'lenient', got 'Strict'"):
        load_docred("json", data_files={"train": str(bom)}, cache_dir=str(tmp_path / "c6"), validation="Strict")


def test_featurize_skip_survives_every_kind_of_fault(redocred_documents, encoder_dirs, relation_info):
    from hf_docre import DocREFeaturizer
    from hf_docre.modeling_docre import load_tokenizer

    label2id = {"NA": 0, **{code: i + 1 for i, code in enumerate(relation_info)}}
    featurizer = DocREFeaturizer(load_tokenizer(encoder_dirs["bert"]), label2id=label2id)
    documents = copy.deepcopy(redocred_documents[: len(BAD) + 2])
    for document, (_, mutate, _) in zip(documents, BAD):
        mutate(document)
    # a document with no entities or no title is fine for the featurizer (not for a corpus)
    with pytest.warns(UserWarning, match=f"Skipped {len(BAD) - 2} of {len(documents)}"):
        features = featurizer.featurize(documents, errors="skip")
    assert [f["title"] for f in features[-2:]] == [d["title"] for d in documents[-2:]]


def test_malformed_cdr_lines_are_bad_documents(tmp_path, relation_info):
    broken_offsets = CDR_LINE.replace("\t0\t1\t0\tD014456", "\tzero\t1\t0\tD014456")  # a start that is not a number
    out_of_text = CDR_LINE.replace("123", "124", 1).replace("\t2:4\t3:5\t", "\t2:40\t3:50\t")  # a mention past the text
    too_few = "125\tAspirin causes ulcers .\t1:CID:2"
    good = CDR_LINE.replace("123", "126", 1)
    path = tmp_path / "train_filter.data"
    path.write_text("\n".join([broken_offsets, out_of_text, too_few, good]) + "\n")
    with pytest.raises(ValueError, match=r"line 1: malformed CDR/GDA line"):
        read_pubtator_file(str(path))
    with pytest.raises(DocREInputError, match="line 1"):
        load_docred("cdr", data_files={"train": str(path)}, split="train", cache_dir=str(tmp_path / "c1"))
    with pytest.warns(UserWarning, match="skipped 3 bad documents, kept 1"):
        kept = load_docred("cdr", data_files={"train": str(path)}, split="train", cache_dir=str(tmp_path / "c2"), validation="lenient")
    assert [row["title"] for row in kept] == ["126"]
