import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import SMALL_HEAD

from hf_docre import DocREModel
from hf_docre.model_card import DocREModelCardCallback, DocREModelCardData, push_to_hub, render_model_card


class RecordingApi:
    def __init__(self, target):
        self.target, self.calls = target, []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id))

    def upload_folder(self, repo_id, folder_path, ignore_patterns=(), **kwargs):
        import fnmatch
        import shutil

        self.calls.append(("upload_folder", repo_id))
        for name in os.listdir(folder_path):
            if not any(fnmatch.fnmatch(name, pattern) for pattern in ignore_patterns):
                shutil.copy(os.path.join(folder_path, name), self.target / name)
        return "commit-info"


@pytest.fixture(scope="module")
def model(encoder_dirs, relation_info):
    torch.manual_seed(0)
    return DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), relation_names=relation_info, **SMALL_HEAD).eval()


def test_card_renders_metadata_results_and_usage(model):
    card = DocREModelCardData(repo_id="org/atlop-tiny", base_model="sentence-transformers/all-MiniLM-L6-v2",
                              datasets=["tonytan48/Re-DocRED"], dataset_name="Re-DocRED", train_documents=400,
                              eval_results={"f1": 0.4412, "ign_f1": 0.4321})
    text = render_model_card(model, card)
    front = text.split("---")[1]
    assert "library_name: transformers" in front and "base_model: sentence-transformers/all-MiniLM-L6-v2" in front
    assert "model-index:" in front and "value: 44.12" in front and "name: Ign-F1" in front and "value: 43.21" in front
    assert 'pipeline(model="org/atlop-tiny", trust_remote_code=True)' in text
    assert "ATLOP" in text and "400 training documents" in text and "@inproceedings{zhou2021atlop" in text


def test_card_of_a_local_encoder_has_no_base_model_metadata(model, encoder_dirs):
    text = render_model_card(model, DocREModelCardData(repo_id="org/tiny", base_model=encoder_dirs["bert"]))
    front = text.split("---")[1]
    assert "base_model:" not in front  # a local folder is not a Hub id
    assert "huggingface.co//" not in text and "a local folder" in text


def test_callback_fills_the_card():
    card = DocREModelCardData()
    callback = DocREModelCardCallback(card)
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir="unused", learning_rate=5e-5, per_device_train_batch_size=4, num_train_epochs=3, report_to=[], use_cpu=True)
    callback.on_train_begin(args, None, None)
    callback.on_evaluate(args, None, None, metrics={"eval_f1": 0.5, "eval_ign_f1": 0.45, "eval_loss": 1.0})
    assert card.hyperparameters["learning_rate (encoder)"] == 5e-5 and card.hyperparameters["train_batch_size"] == 4
    assert card.eval_results == {"f1": 0.5, "ign_f1": 0.45}


@pytest.mark.slow
def test_push_uploads_the_complete_folder_and_keeps_our_readme(model, tmp_path, redocred_documents):
    uploaded = tmp_path / "uploaded"
    uploaded.mkdir()
    api = RecordingApi(uploaded)
    card = DocREModelCardData(eval_results={"f1": 0.3, "ign_f1": 0.25})
    assert push_to_hub(model, "org/atlop-tiny", card, api=api) == "commit-info"
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    files = set(os.listdir(uploaded))
    assert files == {
        "README.md", "config.json", "model.safetensors", "configuration_docre.py", "modeling_docre.py",
        "methods_docre.py", "layers_docre.py", "encoding_docre.py", "heads_docre.py", "losses_docre.py",
        "decoding_docre.py", "processing_docre.py", "pipeline_docre.py", "text_docre.py", "entities_docre.py", "render_docre.py", "pretraining_docre.py",
        "tokenizer.json", "tokenizer_config.json",
    }
    readme = (uploaded / "README.md").read_text()
    assert "org/atlop-tiny" in readme and "value: 30.0" in readme
    usage = readme.split("## Usage")[1].split("```python")[1].split("```")[0].replace('"org/atlop-tiny"', repr(str(uploaded)))
    # The uploaded folder works in a clean process without hf_docre, as a user of the Hub would load it, and the
    # card's usage code runs as written there.
    script = "\n".join([
        "import sys",
        "sys.modules['hf_docre'] = None",
        "from transformers import pipeline",
        f"pipe = pipeline(model={str(uploaded)!r}, trust_remote_code=True)",
        "import json",
        f"relations = pipe(json.loads({json.dumps(json.dumps(redocred_documents[3]))}))",
        usage,
        "print('OK', len(relations))",
    ])
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("OK")
