"""Hostile inputs a user meets on a bad day, grouped by surface. Each case ends in a correct result or a clear error
that names the option or field, and no case loses work or files (issue "Nothing lost, round two")."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import REL_INFO, SMALL_HEAD

from hf_docre import DocREFeaturizer, DocREInputError, DocREModel, SpanAlignmentError

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_docre.py"


@pytest.fixture(scope="module")
def model(encoder_dirs, relation_info):
    torch.manual_seed(0)
    return DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), relation_names=relation_info, **SMALL_HEAD).eval()


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def extractor(model):
    from transformers import pipeline

    return pipeline("doc-relation-extraction", model=model, tokenizer=model.tokenizer)


TEXT = "Alan Turing was born in London. He studied at King's College in Cambridge."


# -- featurizer and data ------------------------------------------------------------------------------------------

def test_featurize_a_generator_keeps_every_document(model, redocred_documents):
    featurizer = DocREFeaturizer.from_model(model)
    features = featurizer.featurize(d for d in redocred_documents[:3])
    assert [f["title"] for f in features] == [d["title"] for d in redocred_documents[:3]]


@pytest.mark.parametrize("field, value, message", [
    ("global_pos", "57", "global_pos"), ("global_pos", [5.0, 7], "global_pos"), ("index", 3, "index"),
])
def test_mention_fields_of_the_wrong_type_are_named(redocred_documents, tmp_path, field, value, message):
    from hf_docre.data import load_docred

    document = json.loads(json.dumps(redocred_documents[0]))
    document["vertexSet"][0][0][field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([document]))
    with pytest.raises(DocREInputError, match=rf"vertexSet\[0\]\[0\]\.{message}"):
        load_docred("json", data_files={"train": str(path)}, cache_dir=str(tmp_path / "cache"))


def test_relation_ids_are_checked_or_warned(redocred_documents, tmp_path):
    from hf_docre.data import load_docred

    document = json.loads(json.dumps(redocred_documents[0]))
    document["labels"][0]["r"] = "P99999"
    path = tmp_path / "train.json"
    path.write_text(json.dumps([document]))
    # Re-DocRED from local files: DocRED's relation ids are known, so an unknown one is an error.
    with pytest.raises(DocREInputError, match="unknown relation 'P99999'"):
        load_docred("redocred", data_files={"train": str(path)}, cache_dir=str(tmp_path / "c1"))
    # Any DocRED-format JSON without relation names: kept, but said.
    with pytest.warns(UserWarning, match="no relation names were given, so the 13 relation ids"):
        load_docred("json", data_files={"train": str(path)}, cache_dir=str(tmp_path / "c2"))


def test_a_truncated_pretty_printed_file_is_located(redocred_documents, tmp_path):
    from hf_docre.data import load_docred

    path = tmp_path / "cut.json"
    path.write_text(json.dumps(redocred_documents[:2], indent=2)[:-200])
    with pytest.raises(DocREInputError) as error:
        load_docred("json", data_files={"train": str(path)}, cache_dir=str(tmp_path / "cache"))
    assert "line 1 " not in str(error.value) and "cut short" in str(error.value)


@pytest.mark.parametrize("content", ["[]", json.dumps([{"title": "no sentences"}])])
def test_a_split_with_no_good_document_is_empty_with_a_warning(tmp_path, content):
    from hf_docre.data import load_docred

    path = tmp_path / "train.json"
    path.write_text(content)
    with pytest.warns(UserWarning, match="0 documents kept"):
        corpus = load_docred("json", data_files={"train": str(path)}, cache_dir=str(tmp_path / "cache"), validation="lenient")
    assert len(corpus["train"]) == 0


@pytest.mark.parametrize("word", ["", "\u200b"])
def test_a_mention_without_tokens_is_an_error_without_markers(encoder_dirs, relation_info, word):
    model = DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), method="bert-baseline", emb_size=16)
    document = {"title": "t", "sents": [["Alan", word, "was", "born", "."]],
                "vertexSet": [[{"name": "Alan", "pos": [0, 1], "sent_id": 0, "type": "PER"}],
                              [{"name": word, "pos": [1, 2], "sent_id": 0, "type": "MISC"}]]}
    with pytest.raises(DocREInputError, match=r"vertexSet\[1\]\[0\].pos.*no tokens"):
        DocREFeaturizer.from_model(model)(document)


# -- pipeline -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [
    ("threshold", "0.5"), ("threshold", [0.5]), ("threshold", True), ("threshold", math.nan), ("threshold", 1.5),
    ("top_k", True), ("top_k", 0), ("max_relations_per_pair", 2.5), ("max_relations_per_pair", "2"),
    ("max_relations_per_pair", math.nan), ("context_words", -1), ("context_words", 2.5), ("batch_size", 0),
    ("batch_size", -1), ("batch_size", 2.5), ("return_context", "yes"),
])
def test_pipeline_options_are_checked(extractor, redocred_documents, option, value):
    with pytest.raises(ValueError, match=option):
        extractor(redocred_documents[0], **{option: value})


def test_pipeline_on_no_documents_returns_no_results(extractor):
    assert extractor([]) == []


def test_entities_as_a_dict_are_named(extractor):
    with pytest.raises(SpanAlignmentError, match="`entities` must be a list.*wrap a single entity"):
        extractor({"text": TEXT, "entities": {"mentions": [[0, 11]], "type": "PER"}})


@pytest.mark.parametrize("span", [[0.5, 11.7], [0, 11, 30], [0.0, 11.0], ["0", "11"], [False, 11], [0, None]])
def test_character_spans_must_be_two_ints(extractor, span):
    with pytest.raises(SpanAlignmentError, match=r"mentions\[0\]"):
        extractor({"text": TEXT, "entities": [{"mentions": [span], "type": "PER"}, {"mentions": [[24, 30]], "type": "LOC"}]})


@pytest.mark.parametrize("span", [(0.5, 11.7), ("0", "11"), (0, 11, 3)])
def test_flat_spans_must_be_ints_with_a_string_label(extractor, span):
    with pytest.raises(SpanAlignmentError, match=r"entities\[0\]"):
        extractor({"text": TEXT, "entities": [span, (24, 30, "LOC")]})


def test_html_into_a_folder_that_is_a_file_fails_before_any_document_runs(model, extractor, redocred_documents, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    calls = []
    monkeypatch.setattr(type(model), "forward", lambda self, *a, **k: calls.append(1) or (_ for _ in ()).throw(AssertionError("ran")))
    with pytest.raises(ValueError, match="html .*is a file, not a folder"):
        extractor(redocred_documents[:3], html=str(blocker / "page.html"))
    assert not calls


def _stopped_on_second_call(method):
    """`method`, interrupted (KeyboardInterrupt, as Ctrl-C) on its second call: a run stopped half-way."""
    calls = []

    def stopped(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return method(self, *args, **kwargs)

    return stopped


def test_an_interrupted_pipeline_still_writes_the_page_of_the_documents_done(extractor, redocred_documents, tmp_path, monkeypatch):
    page = tmp_path / "page.html"
    monkeypatch.setattr(type(extractor), "run_preprocessed", _stopped_on_second_call(type(extractor).run_preprocessed))
    with pytest.raises(KeyboardInterrupt):
        extractor(redocred_documents[:4], html=str(page), batch_size=2)
    text = page.read_text()
    assert redocred_documents[0]["title"] in text and redocred_documents[3]["title"] not in text


# -- command line -------------------------------------------------------------------------------------------------

def _cli(argv):
    from hf_docre.cli import main

    return main(argv)


def _jsonl(tmp_path, documents, name="in.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(d) + "\n" for d in documents))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda p, i: ["--output", str(p / "missing" / "out.jsonl")], "does not exist"),
    (lambda p, i: ["--output", str(i)], "is also an input"),
    (lambda p, i: ["--output", str(p / "out.jsonl"), "--html", str(i)], "is also an input"),
    (lambda p, i: ["--output", str(p / "out.jsonl"), "--batch_size", "0"], "--batch_size"),
    (lambda p, i: (p / "dir.jsonl").mkdir() or ["--output", str(p / "dir.jsonl")], "is a folder"),
])
def test_predict_checks_its_outputs_before_any_work(saved, redocred_documents, tmp_path, capsys, change, message):
    source = _jsonl(tmp_path, redocred_documents[:2])
    before = source.read_text()
    assert _cli(["predict", "--model", str(saved), "--input", str(source), "--quiet", *change(tmp_path, source)]) == 2
    assert message in capsys.readouterr().err
    assert source.read_text() == before, "the input is never overwritten"


def test_predict_names_a_missing_model_folder(redocred_documents, tmp_path, capsys):
    source = _jsonl(tmp_path, redocred_documents[:1])
    code = _cli(["predict", "--model", str(tmp_path / "no-such-model"), "--input", str(source), "--output", str(tmp_path / "o.jsonl"), "--quiet"])
    error = capsys.readouterr().err
    assert code == 2 and "--model" in error and "no-such-model" in error and "Traceback" not in error


def test_predict_writes_jsonl_as_it_goes(saved, redocred_documents, tmp_path, monkeypatch):
    from hf_docre.pipeline_docre import DocumentRelationExtractionPipeline

    source = _jsonl(tmp_path, redocred_documents[:4])
    output = tmp_path / "out.jsonl"
    original = DocumentRelationExtractionPipeline.run_preprocessed
    monkeypatch.setattr(DocumentRelationExtractionPipeline, "run_preprocessed", _stopped_on_second_call(original))
    with pytest.raises(KeyboardInterrupt):
        _cli(["predict", "--model", str(saved), "--input", str(source), "--output", str(output), "--batch_size", "2",
              "--bucket_window", "1", "--quiet"])
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["title"] for line in lines] == [d["title"] for d in redocred_documents[:2]]
    # batches by length: the two longest documents ran first; they are kept (in input order), and a rerun does the rest
    output.unlink()
    import shutil

    shutil.rmtree(str(output) + ".parts")
    monkeypatch.setattr(DocumentRelationExtractionPipeline, "run_preprocessed", _stopped_on_second_call(original))
    with pytest.raises(KeyboardInterrupt):
        _cli(["predict", "--model", str(saved), "--input", str(source), "--output", str(output), "--batch_size", "2", "--quiet"])
    lengths = [sum(len(s) for s in d["sents"]) for d in redocred_documents[:4]]
    longest = sorted(sorted(range(4), key=lambda k: -lengths[k])[:2])
    assert [json.loads(line)["title"] for line in output.read_text().splitlines()] == [redocred_documents[k]["title"] for k in longest]
    monkeypatch.undo()
    assert _cli(["predict", "--model", str(saved), "--input", str(source), "--output", str(output), "--batch_size", "2", "--quiet"]) == 0
    assert [json.loads(line)["title"] for line in output.read_text().splitlines()] == [d["title"] for d in redocred_documents[:4]]


# -- saved folders ------------------------------------------------------------------------------------------------

def _copy(saved, target):
    import shutil

    shutil.copytree(saved, target)
    return target


def test_a_folder_without_head_weights_is_refused_unless_asked(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy(saved, tmp_path / "no-head")
    weights = load_file(str(folder / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith("head.")}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"lack \d+ head tensors \(head\."):
        DocREModel.from_pretrained(str(folder))
    model = DocREModel.from_pretrained(str(folder), fresh_head=True)
    assert model.head is not None


def test_a_folder_without_encoder_weights_is_refused(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy(saved, tmp_path / "no-encoder")
    weights = load_file(str(folder / "model.safetensors"))
    del weights["encoder.embeddings.word_embeddings.weight"]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="encoder.embeddings.word_embeddings.weight"):
        DocREModel.from_pretrained(str(folder), fresh_head=True)


def test_nan_weights_are_refused(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy(saved, tmp_path / "nan")
    weights = load_file(str(folder / "model.safetensors"))
    weights["head.bilinear.weight"][0, 0] = float("nan")
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="NaN or infinite values in head.bilinear.weight"):
        DocREModel.from_pretrained(str(folder))


@pytest.mark.parametrize("key", [None, "id2label", "encoder", "emb_size", "block_size"])
def test_an_incomplete_config_names_the_missing_key(saved, tmp_path, key):
    folder = _copy(saved, tmp_path / "config")
    if key is None:
        (folder / "config.json").unlink()
        message = "no config.json"
    else:
        config = json.loads((folder / "config.json").read_text())
        del config[key]
        (folder / "config.json").write_text(json.dumps(config))
        message = f"lacks '{key}'"
    with pytest.raises(OSError, match=message):
        DocREModel.from_pretrained(str(folder))


# -- run_docre.py -------------------------------------------------------------------------------------------------

def _run_docre_arguments(argv):
    sys.path.insert(0, str(SCRIPT.parent))
    from run_docre import DataArguments, ModelArguments, check_arguments
    from transformers import HfArgumentParser, TrainingArguments

    parsed = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments)).parse_args_into_dataclasses(argv)
    return check_arguments, parsed


def _base(encoder_dirs, tmp_path, train):
    return ["--model_name_or_path", encoder_dirs["bert"], "--relations_file", str(REL_INFO), "--train_file", str(train),
            "--do_train", "--output_dir", str(tmp_path / "out"), "--use_cpu", "--report_to", "none"]


@pytest.fixture
def train_file(tmp_path, redocred_documents):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(redocred_documents[:3]))
    return path


def test_run_docre_output_dir_that_is_a_file(encoder_dirs, tmp_path, train_file):
    (tmp_path / "out").write_text("a file")
    check, args = _run_docre_arguments(_base(encoder_dirs, tmp_path, train_file))
    with pytest.raises(ValueError, match="--output_dir .* is a file"):
        check(*args)


def test_run_docre_refuses_to_replace_a_finished_model(encoder_dirs, tmp_path, train_file):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.safetensors").write_bytes(b"finished")
    check, args = _run_docre_arguments(_base(encoder_dirs, tmp_path, train_file))
    with pytest.raises(ValueError, match="already holds a trained model.*--overwrite_output_dir"):
        check(*args)
    check, args = _run_docre_arguments(_base(encoder_dirs, tmp_path, train_file) + ["--overwrite_output_dir"])
    check(*args)


@pytest.mark.parametrize("extra, message", [
    (["--config_overrides", "emb_size=abc"], "emb_size` must be an int"),
    (["--config_overrides", "block_size=0"], "block_size` must be at least 1"),
    (["--validation_holdout", "-1"], "--validation_holdout must be 0 or more"),
    (["--validation_holdout", "1", "--validation_file", "TRAIN"], "pass one of them"),
    (["--max_train_documents", "0"], "--max_train_documents must be at least 1"),
])
def test_run_docre_options_are_checked(encoder_dirs, tmp_path, train_file, extra, message):
    extra = [str(train_file) if item == "TRAIN" else item for item in extra]
    check, args = _run_docre_arguments(_base(encoder_dirs, tmp_path, train_file) + extra)
    with pytest.raises(ValueError, match=message):
        check(*args)


def test_run_docre_holdout_larger_than_the_data(encoder_dirs, tmp_path, train_file):
    sys.path.insert(0, str(SCRIPT.parent))
    from run_docre import load_splits

    check, (model_args, data_args, training_args) = _run_docre_arguments(
        _base(encoder_dirs, tmp_path, train_file) + ["--validation_holdout", "3", "--cache_dir", str(tmp_path / "cache")])
    with pytest.raises(ValueError, match="--validation_holdout 3: the training split 'train' has 3 documents"):
        load_splits(data_args)


# -- metric -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("predictions, message", [
    ([[{"h_idx": 0, "t_idx": 1, "r": "P17"}], None], r"predictions\[1\] must be the list"),
    ([[["not", "a", "dict"]], []], r"predictions\[0\]\[0\] must be a dict"),
    ([{"title": "T0", "h_idx": 0, "t_idx": 1, "r": "P17", "evidence": "01"}], "evidence must be a list"),
    ([{"title": "T0", "h_idx": 0, "t_idx": 1, "r": "P17", "evidence": [None]}], "evidence must be a list"),
    ([{"title": "T0", "h_idx": 0, "t_idx": 1, "r": "P17", "evidence": 3}], "evidence must be a list"),
    (None, "predictions must be a list"),
])
def test_metric_names_bad_predictions(redocred_documents, predictions, message):
    from hf_docre.metrics import score_docred

    references = [dict(redocred_documents[0], title="T0"), dict(redocred_documents[1], title="T1")]
    with pytest.raises(ValueError, match=message):
        score_docred(predictions, references)


def test_metric_names_bad_references_and_training_documents(redocred_documents):
    from hf_docre.metrics import score_docred

    with pytest.raises(ValueError, match="references must be a list"):
        score_docred([], None)
    with pytest.raises(ValueError, match="repeats the title"):
        score_docred([], [redocred_documents[0], redocred_documents[0]])
    train = json.loads(json.dumps(redocred_documents[1]))
    for mentions in train["vertexSet"]:
        for mention in mentions:
            del mention["name"]
    with pytest.raises(ValueError, match=r"training document .* field vertexSet\[\d+\]\[0\].name"):
        score_docred([], [redocred_documents[0]], [train])


def test_run_docre_predictions_are_kept_when_a_run_stops(saved, redocred_documents, tmp_path, monkeypatch):
    """--do_predict appends each chunk's relations to predictions.partial.jsonl as it goes."""
    sys.path.insert(0, str(SCRIPT.parent))
    import run_docre
    from transformers import Trainer

    test_file = tmp_path / "test.json"
    test_file.write_text(json.dumps(redocred_documents[:3]))
    output_dir = tmp_path / "predict"
    monkeypatch.setattr(Trainer, "predict", _stopped_on_second_call(Trainer.predict))
    monkeypatch.setattr(sys, "argv", ["run_docre.py", "--model_name_or_path", str(saved), "--test_file", str(test_file),
                                      "--do_predict", "--output_dir", str(output_dir), "--predict_chunk_documents", "1",
                                      "--use_cpu", "--report_to", "none", "--cache_dir", str(tmp_path / "cache")])
    with pytest.raises(KeyboardInterrupt):
        run_docre.main()
    lines = [json.loads(line) for line in (output_dir / "predictions.partial.jsonl").read_text().splitlines()]
    assert lines and {line["title"] for line in lines} == {redocred_documents[0]["title"]}


@pytest.mark.parametrize("name, content, where", [
    ("broken.jsonl", '{"text": "Ada Lovelace', "column 10: Unterminated string starting at)"),
    ("broken.json", '[{"title": "Ada Lovelace', "line 1, column 12: Unterminated string starting at)"),
])
def test_predict_names_where_the_json_breaks_in_plain_words(saved, tmp_path, capsys, name, content, where):
    source = tmp_path / name
    source.write_text(content)
    assert _cli(["predict", "--model", str(saved), "--input", str(source), "--output", str(tmp_path / "o.jsonl"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert where in error and "at at" not in error, error
