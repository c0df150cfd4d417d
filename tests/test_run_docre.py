"""examples/run_docre.py end to end on a few real Re-DocRED documents, in one process and under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import pipeline

from conftest import REL_INFO
from hf_docre import DocREModel

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_docre.py"


@pytest.fixture(scope="module")
def files(tmp_path_factory, redocred_documents):
    folder = tmp_path_factory.mktemp("run-data")
    (folder / "train.json").write_text(json.dumps(redocred_documents[:6]))
    (folder / "test.json").write_text(json.dumps(redocred_documents[6:9]))
    return folder


def arguments(encoder_dirs, files, output_dir, steps):
    return [
        "--model_name_or_path", encoder_dirs["bert"], "--relations_file", str(REL_INFO),
        "--train_file", str(files / "train.json"), "--test_file", str(files / "test.json"), "--validation_holdout", "2",
        "--emb_size", "64", "--block_size", "16", "--do_train", "--do_eval", "--do_predict",
        "--output_dir", str(output_dir), "--max_steps", str(steps), "--per_device_train_batch_size", "1",
        "--use_cpu", "--report_to", "none", "--save_strategy", "no", "--cache_dir", str(output_dir / "cache"),
    ]


def check_outputs(output_dir, redocred_documents):
    files = set(os.listdir(output_dir))
    assert {"model.safetensors", "config.json", "modeling_docre.py", "pipeline_docre.py", "tokenizer.json",
            "eval_results.json", "predict_results.json", "train_results.json", "result.json", "result.zip"} <= files
    evaluation = json.loads((output_dir / "eval_results.json").read_text())
    gold_holdout = sum(len({(l["h"], l["t"], l["r"]) for l in d["labels"]}) for d in redocred_documents[4:6])
    assert evaluation["eval_num_gold"] == gold_holdout  # every held-out document was evaluated
    assert 0 <= evaluation["eval_f1"] <= 1 and "eval_ign_f1" in evaluation
    predicted = json.loads((output_dir / "predict_results.json").read_text())
    assert predicted["predict_num_gold"] == sum(len({(l["h"], l["t"], l["r"]) for l in d["labels"]}) for d in redocred_documents[6:9])
    records = json.loads((output_dir / "result.json").read_text())
    titles = {d["title"] for d in redocred_documents[6:9]}
    assert len(records) == predicted["predict_num_predictions"]
    assert all(r["title"] in titles and set(r) == {"title", "h_idx", "t_idx", "r", "evidence"} for r in records)


@pytest.mark.slow
def test_run_docre_train_eval_predict(encoder_dirs, files, tmp_path, redocred_documents):
    output_dir = tmp_path / "out"
    joined = ["--joined_train_documents", "2", "--join_max_documents", "2"]  # joined copies of the 4 training documents
    result = subprocess.run([sys.executable, str(SCRIPT), *arguments(encoder_dirs, files, output_dir, 4), *joined],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Added 2 joined training documents" in result.stderr
    check_outputs(output_dir, redocred_documents)
    model = DocREModel.from_pretrained(output_dir)
    relations = pipeline("doc-relation-extraction", model=model)(redocred_documents[7])
    assert isinstance(relations, list)


@pytest.mark.slow
def test_run_docre_under_torchrun_with_two_processes(encoder_dirs, files, tmp_path, redocred_documents):
    output_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", str(SCRIPT),
               *arguments(encoder_dirs, files, output_dir, 3)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    log = result.stdout + result.stderr
    assert "Process rank: 0, world size: 2" in log and "Process rank: 1, world size: 2" in log
    assert "distributed training: True" in log
    check_outputs(output_dir, redocred_documents)


@pytest.mark.slow
def test_run_docre_methods_and_distillation(encoder_dirs, files, tmp_path, redocred_documents):
    def run(output_dir, *extra):
        result = subprocess.run([sys.executable, str(SCRIPT), *arguments(encoder_dirs, files, output_dir, 2), *extra],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-4000:]
        check_outputs(output_dir, redocred_documents)
        return result.stdout + result.stderr

    # Two-step: one artefact; the global threshold is tuned on the evaluation documents after training.
    log = run(tmp_path / "two-step", "--method", "two-step")
    assert "Global threshold tuned on dev" in log
    config = json.loads((tmp_path / "two-step" / "config.json").read_text())
    assert config["method"] == "two-step" and config["two_step"] and config["entity_marker"] is None
    assert "BERT two-step" in (tmp_path / "two-step" / "README.md").read_text()

    # KD-DocRE: a teacher, then a student trained on its stored logits.
    run(tmp_path / "teacher", "--method", "kd-docre")
    log = run(tmp_path / "student", "--method", "kd-docre", "--teacher_model_name_or_path", str(tmp_path / "teacher"))
    assert "Distilling from" in log
    assert list((tmp_path / "student" / "teacher_logits").glob("teacher-*.parquet"))
    card = (tmp_path / "student" / "README.md").read_text()
    assert "KD-DocRE" in card and "axial attention" in card and "Tan et al. 2022" in card


@pytest.mark.slow
def test_rerun_resumes_from_the_last_checkpoint(encoder_dirs, files, tmp_path):
    output_dir = tmp_path / "resume"
    args = arguments(encoder_dirs, files, output_dir, 4)
    args[args.index("--save_strategy") + 1] = "steps"
    args += ["--save_steps", "2", "--logging_steps", "1"]
    args = [a for a in args if a not in ("--do_eval", "--do_predict")]
    first = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    history = [e for e in json.loads((output_dir / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    whole = json.loads((output_dir / "train_results.json").read_text())["train_loss"]
    assert whole == pytest.approx(sum(e["loss"] for e in history) / 4, rel=1e-4)
    # Rerun with more steps: it continues from checkpoint-4, not from step 0, and reports the loss of all 6 steps.
    args[args.index("--max_steps") + 1] = "6"
    second = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "resuming training from" in second.stderr and "checkpoint-4" in second.stderr
    state = json.loads((output_dir / "checkpoint-6" / "trainer_state.json").read_text())
    steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert steps == [1, 2, 3, 4, 5, 6]  # steps 1-4 from the first run, 5-6 from the resumed one
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    resumed = json.loads((output_dir / "train_results.json").read_text())["train_loss"]
    assert resumed == pytest.approx(sum(losses) / 6, rel=1e-3)
