"""The authors' released checkpoints convert into hf_docre models with their exact computation.

`fixtures/released_<source>_<kind>.json` were written by `fixtures/make_released_fixtures.py`, which ran the
authors' ATLOP and DREEAM code (outside this repository) on a tiny random encoder and real Re-DocRED documents,
short ones and 513-1024 tokens. Each holds the released state dict's key names and shapes, the token ids their
preprocessing gave, their logits for a sample of pairs, and digests of their decisions and (DREEAM) evidence for
every pair. The weights are rebuilt from their names (`fixture_weights`), saved with `torch.save` as the authors'
training does, and converted here.
"""

import json
import os
import sys
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).with_name("fixtures")
sys.path.insert(0, str(FIXTURES))
import make_released_fixtures as released  # noqa: E402

CASES = sorted(path.stem[len("released_"):] for path in FIXTURES.glob("released_*.json"))


def _fixture(case):
    return json.loads((FIXTURES / f"released_{case}.json").read_text())


@pytest.fixture(scope="module")
def encoder_folders(tmp_path_factory, redocred_documents):
    return {kind: released.encoder_folder(kind, str(tmp_path_factory.mktemp(f"released-{kind}"))) for kind in ("bert", "roberta")}


def _released_checkpoint(fixture, folder):
    return released.released_file(fixture["released_keys"], os.path.join(folder, f"{fixture['source']}.pt"), seed=fixture["seed"])


def test_every_source_has_its_fixtures():
    assert set(CASES) == {f"{source}_{kind}" for source in ("atlop", "dreeam", "kd_docre") for kind in ("bert", "roberta")}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_converted_checkpoint_gives_the_released_codes_logits_decisions_and_evidence(case, encoder_folders, tmp_path, redocred_documents):
    fixture = _fixture(case)
    assert released.TINY_ENCODER == fixture["encoder"] and released.HEAD == fixture["head"]
    documents = [redocred_documents[entry["index"]] for entry in fixture["documents"]]
    assert any(entry["tokens"] > 512 for entry in fixture["documents"]), "the fixture needs long documents"
    checkpoint = _released_checkpoint(fixture, str(tmp_path))
    model, ours = released.run_hf_docre(fixture["source"], checkpoint, encoder_folders[fixture["kind"]], documents)
    for entry, our in zip(fixture["documents"], ours):
        where = f"{case}, document {entry['index']} ({entry['tokens']} tokens)"
        assert our["input_ids"] == entry["input_ids"], f"{where}: token ids differ from the released preprocessing"
        expected = torch.tensor(entry["logits"])
        got = our["logits"][entry["logit_pairs"]]
        assert (got - expected).abs().max() < 1e-4, f"{where}: logits differ by {(got - expected).abs().max():.2e}"
        assert released.digest(our["decisions"][:, 1:].nonzero().tolist()) == entry["decisions"], f"{where}: decisions"
        if fixture["source"] == "dreeam":
            evidence = (our["evidence"] > 0.2).nonzero().tolist()
            assert released.digest(evidence) == entry["evidence"], f"{where}: evidence"
            if entry.get("batch_losses"):  # the relation and evidence losses of the batch this document opens
                assert our["batch_losses"] == pytest.approx(entry["batch_losses"], rel=1e-4), f"{where}: losses"


@pytest.mark.slow
@pytest.mark.parametrize("case, option, value", [
    ("atlop_bert", "long_input", "windows"), ("atlop_bert", "context_epsilon", 0.0), ("dreeam_bert", "context_layers", 1),
    ("kd_docre_bert", "long_input", "windows"), ("kd_docre_bert", "axial_table_size", 1),
])
def test_each_released_option_is_needed(case, option, value, encoder_folders, tmp_path, redocred_documents):
    """The fixture test can fail: without any one of the released options, logits leave the 1e-4 tolerance."""
    from hf_docre import DocREDataCollator, DocREFeaturizer
    from hf_docre.conversion import convert_checkpoint

    fixture = _fixture(case)
    checkpoint = _released_checkpoint(fixture, str(tmp_path))
    model = convert_checkpoint(fixture["source"], checkpoint, encoder=encoder_folders["bert"], log=lambda line: None)
    setattr(model.config, option, value)  # read at run time (the table size by the released axial head)
    entries = [e for e in fixture["documents"] if e["tokens"] > 512]
    features = DocREFeaturizer.from_model(model).featurize([redocred_documents[e["index"]] for e in entries], with_labels=False)
    with torch.no_grad():
        logits = model(**DocREDataCollator.from_model(model)(features)).logits
    worst = max(float((logits[b, e["logit_pairs"]] - torch.tensor(e["logits"])).abs().max()) for b, e in enumerate(entries))
    assert worst > 1e-4, f"{option}={value!r} left the logits within the tolerance ({worst:.1e})"


def test_isolated_word_tokenization_matches_tokenize_word_by_word(encoder_folders):
    """RoBERTa: the released code tokenizes each word alone with no space before it."""
    from transformers import AutoTokenizer

    from hf_docre import DocREFeaturizer
    from hf_docre.modeling_docre import load_tokenizer

    folder = encoder_folders["roberta"]
    words = ["Alan", "Turing", "was", "born", "in", "London", "(", "U.K.", ")", "3.5", '"quoted"']
    plain = AutoTokenizer.from_pretrained(folder, add_prefix_space=False)
    expected = [plain.convert_tokens_to_ids(t) for w in words for t in plain.tokenize(w)]
    document = {"title": "t", "sents": [words], "vertexSet": [[{"name": "Alan Turing", "pos": [0, 2], "sent_id": 0, "type": "PER"}]]}
    tokenizer = load_tokenizer(folder)
    isolated = DocREFeaturizer(tokenizer, entity_marker=None, word_tokenization="isolated")(document)["input_ids"]
    in_context = DocREFeaturizer(tokenizer, entity_marker=None)(document)["input_ids"]
    assert isolated[1:-1] == expected
    assert in_context != isolated


# -- bad files: clear errors before anything is written ------------------------------------------------------------

def _write_state(path, state):
    torch.save(state, path)
    return str(path)


def _released_state(fixture):
    from make_saved_folders import fixture_weights

    return fixture_weights({k: tuple(v) for k, v in fixture["released_keys"].items()}, seed=fixture["seed"])


def test_wrong_encoder_names_the_key_and_expected_shape(encoder_folders, tmp_path):
    from hf_docre.conversion import CheckpointConversionError, convert_checkpoint

    fixture = _fixture("atlop_bert")
    state = _released_state(fixture)
    checkpoint = _write_state(tmp_path / "atlop.pt", state)
    # The RoBERTa folder has another vocabulary size (and position table): shape mismatches, named.
    output = tmp_path / "out"
    with pytest.raises(CheckpointConversionError) as error:
        convert_checkpoint("atlop", checkpoint, encoder=encoder_folders["roberta"], output=output, log=lambda line: None)
    message = str(error.value)
    assert "model.embeddings.word_embeddings.weight" in message and "expected" in message and "wrong --encoder" in message
    assert not output.exists(), "nothing is written when the conversion fails"


def test_missing_and_unexpected_keys_are_named(encoder_folders, tmp_path):
    from hf_docre.conversion import CheckpointConversionError, convert_checkpoint

    fixture = _fixture("atlop_bert")
    state = _released_state(fixture)
    del state["tail_extractor.bias"]
    with pytest.raises(CheckpointConversionError, match=r"missing key 'tail_extractor.bias' \(expected shape \(64,\)\)"):
        convert_checkpoint("atlop", _write_state(tmp_path / "a.pt", state), encoder=encoder_folders["bert"], log=lambda line: None)
    state = _released_state(fixture)
    state["entity_classifier.weight"] = torch.zeros(7, 32)
    with pytest.raises(CheckpointConversionError, match="unexpected keys for a atlop checkpoint: entity_classifier.weight"):
        convert_checkpoint("atlop", _write_state(tmp_path / "b.pt", state), encoder=encoder_folders["bert"], log=lambda line: None)


def test_fp16_leftovers_are_converted_and_said(encoder_folders, tmp_path):
    from hf_docre.conversion import convert_checkpoint

    fixture = _fixture("atlop_bert")
    state = {k: v.half() if k.startswith("bilinear") else v for k, v in _released_state(fixture).items()}
    lines = []
    model = convert_checkpoint("atlop", _write_state(tmp_path / "half.pt", state), encoder=encoder_folders["bert"], log=lines.append)
    assert any("2 half-precision tensors" in line and "float32" in line for line in lines), lines
    assert model.head.bilinear.weight.dtype == torch.float32
    torch.testing.assert_close(model.head.bilinear.weight, state["bilinear.weight"].float())


class _Pickled:
    pass


def test_a_file_that_needs_arbitrary_code_is_refused(encoder_folders, tmp_path):
    from hf_docre.conversion import CheckpointConversionError, convert_checkpoint

    path = tmp_path / "model.pt"
    torch.save({"model": _Pickled()}, path)
    with pytest.raises(CheckpointConversionError, match="weights_only=True"):
        convert_checkpoint("atlop", str(path), encoder=encoder_folders["bert"], log=lambda line: None)


# -- the converted folder: from_pretrained, pipeline on every input kind, card, CLI -----------------------------------

@pytest.mark.slow
def test_converted_folder_loads_runs_in_the_pipeline_and_has_its_card(encoder_folders, tmp_path, redocred_documents):
    from transformers import pipeline

    from hf_docre import DocREModel
    from hf_docre.cli import main

    fixture = _fixture("dreeam_bert")
    checkpoint = _released_checkpoint(fixture, str(tmp_path))
    output = tmp_path / "dreeam-tiny"
    assert main(["convert", "--source", "dreeam", "--checkpoint", checkpoint, "--encoder", encoder_folders["bert"],
                 "--output", str(output)]) == 0
    card = (output / "README.md").read_text()
    assert "dreeam.pt" in card and "not re-measured" in card and "80.73" in card and "MIT" in card
    assert "hf-docre convert --source dreeam" in card
    assert main(["convert", "--source", "dreeam", "--checkpoint", checkpoint, "--encoder", encoder_folders["bert"],
                 "--output", str(output)]) == 2, "an existing folder is not overwritten"

    model = DocREModel.from_pretrained(str(output)).eval()
    assert model.config.long_input == "two_windows" and model.config.context_layers == 3
    extractor = pipeline("doc-relation-extraction", model=model, tokenizer=model.tokenizer)
    document = redocred_documents[fixture["documents"][0]["index"]]
    relations = extractor(document)
    assert relations and all("evidence" in r and set(r["evidence"]) <= set(range(len(document["sents"]))) for r in relations)
    text = "Alan Turing was born in London. He studied at King's College in Cambridge."
    with_entities = extractor({"text": text, "entities": [{"mentions": [[0, 11]], "type": "PER"},
                                                          {"mentions": [[24, 30]], "type": "LOC"}]})
    assert all("evidence_spans" in r for r in with_entities)
    assert isinstance(extractor(text, recognizer="rules"), list)


@pytest.mark.slow
def test_converted_kd_docre_is_pushed_with_its_card_and_runs_without_hf_docre(encoder_folders, tmp_path, redocred_documents):
    import subprocess

    from test_model_card import RecordingApi

    from hf_docre import DocREModel
    from hf_docre.conversion import convert_checkpoint
    from hf_docre.model_card import push_to_hub

    fixture = _fixture("kd_docre_bert")
    state = _released_state(fixture)
    state["teacher_model.bilinear.weight"] = torch.zeros(3, 3)  # a distillation stage's file holds its teacher
    lines = []
    convert_checkpoint("kd-docre", _write_state(tmp_path / "kd.pt", state), encoder=encoder_folders["bert"],
                       output=tmp_path / "kd", log=lines.append)
    assert any("teacher_model.bilinear.weight" in line and "not converted" in line for line in lines), lines
    model = DocREModel.from_pretrained(str(tmp_path / "kd")).eval()
    assert model.config.head_type == "axial_released"
    uploaded = tmp_path / "uploaded"
    uploaded.mkdir()
    push_to_hub(model, "org/kd-docre-tiny", api=RecordingApi(uploaded))
    card = (uploaded / "README.md").read_text()
    assert "kd.pt" in card and "KD-DocRE" in card and "not re-measured" in card and "67.28" in card
    entry = fixture["documents"][0]
    script = "\n".join([
        "import sys, json, torch",
        "sys.modules['hf_docre'] = None",
        "from transformers import AutoModel, AutoTokenizer",
        f"model = AutoModel.from_pretrained({str(uploaded)!r}, trust_remote_code=True).eval()",
        "from transformers.pipelines import pipeline",
        f"pipe = pipeline(model={str(uploaded)!r}, trust_remote_code=True)",
        f"print(len(pipe(json.loads({json.dumps(json.dumps(redocred_documents[entry['index']]))}))))",
    ])
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip().splitlines()[-1]) > 0
