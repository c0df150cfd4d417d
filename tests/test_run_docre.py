"""examples/run_docre.py end to end on a few real Re-DocRED documents, in one process and under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REL_INFO
from transformers import pipeline

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
        "--config_overrides", "emb_size=64,block_size=16", "--do_train", "--do_eval", "--do_predict",
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
    # joined copies of the 4 training documents, their cross-part pairs weighted
    joined = ["--joined_train_documents", "2", "--join_max_documents", "2", "--joined_cross_pair_weight", "3"]
    encoder_options = ["--encoder_config_overrides", "attention_probs_dropout_prob=0.0"]
    result = subprocess.run([sys.executable, str(SCRIPT), *arguments(encoder_dirs, files, output_dir, 4), *joined, *encoder_options],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Added 2 joined training documents" in result.stderr
    assert "loss weight of the pairs across their parts: 3)" in result.stderr
    from hf_docre.training import cpu_has_native_bf16

    assert ("This CPU computes bf16 natively: --bf16" in result.stderr) == cpu_has_native_bf16()
    check_outputs(output_dir, redocred_documents)
    model = DocREModel.from_pretrained(output_dir)
    assert model.config.encoder.attention_probs_dropout_prob == 0.0
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
    # distillation under torchrun: the two ranks split the teacher pass (their shards), then train the student
    student = tmp_path / "ddp-student"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29518", str(SCRIPT),
               *arguments(encoder_dirs, files, student, 2), "--teacher_model_name_or_path", str(output_dir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Distilling from" in result.stdout + result.stderr
    assert json.loads((student / "teacher_logits" / "teacher_logits.json").read_text())["num_features"] == 4
    assert len(list((student / "teacher_logits").glob("teacher-*.parquet"))) == 1


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


def _run(args, env=None, timeout=600):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.slow
@pytest.mark.parametrize("change, message", [
    (lambda a: [x for x in a if x not in ("--do_train", "--do_eval", "--do_predict")], "Nothing to do"),
    (lambda a: _drop(a, "--validation_holdout", 1), "--do_eval needs --validation_file"),
    (lambda a: _drop(a, "--test_file", 1), "--do_predict needs --test_file"),
    (lambda a: a + ["--push_to_hub"], "--push_to_hub needs --hub_model_id"),
    (lambda a: a + ["--push_to_hub", "--hub_model_id", "org/x"], "HF_HUB_OFFLINE"),
    (lambda a: a + ["--config_overrides", "emb_sise=64"], "unknown DocREConfig option 'emb_sise'"),
    (lambda a: a + ["--method", "atlpo"], "--method must be one of"),
    (lambda a: a + ["--encoder_config_overrides", "attention_probs_dropout"], "--encoder_config_overrides: 'attention_probs_dropout' is not key=value"),
    (lambda a: _drop(a, "--relations_file", 1), "needs --relations_file"),
    (lambda a: a + ["--teacher_model_name_or_path", "t", "--joined_train_fraction", "0.5"], "with a teacher: pass --joined_draw once"),
    (lambda a: a + ["--joined_draw", "once", "--joined_cross_pair_weight", "2"], "--joined_cross_pair_weight needs --joined_draw epoch"),
])
def test_run_docre_fails_before_loading_anything(encoder_dirs, files, tmp_path, change, message):
    output_dir = tmp_path / "out"
    result = _run(change(arguments(encoder_dirs, files, output_dir, 1)), env={"HF_HUB_OFFLINE": "1"}, timeout=120)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    assert "Loading weights" not in result.stderr and not (output_dir / "cache").exists()  # nothing loaded, no data prepared


def _drop(args, flag, values):
    i = args.index(flag)
    return args[:i] + args[i + 1 + values:]


def test_config_overrides_parse_json_values_and_reject_unknown_keys():
    sys.path.insert(0, str(SCRIPT.parent))
    from run_docre import parse_config_overrides

    assert parse_config_overrides("loss=afl, focal_gamma=0.3,two_step_shared_encoder=true,window_size=null") == {
        "loss": "afl", "focal_gamma": 0.3, "two_step_shared_encoder": True, "window_size": None}
    with pytest.raises(ValueError, match="not key=value"):
        parse_config_overrides("loss")


def test_training_recipe_fills_only_options_not_given():
    sys.path.insert(0, str(SCRIPT.parent))
    from run_docre import ModelArguments, apply_training_recipe, given_options
    from transformers import TrainingArguments

    from hf_docre import METHODS

    argv = ["--learning_rate", "3e-5", "--num_train_epochs=2", "--output_dir", "x"]
    model_args = ModelArguments(model_name_or_path="x")
    training_args = TrainingArguments(output_dir="x", learning_rate=3e-5, num_train_epochs=2, report_to="none")
    applied = apply_training_recipe("atlop", model_args, training_args, given_options(argv))
    recipe = METHODS["atlop"].recipe
    assert training_args.learning_rate == 3e-5 and training_args.num_train_epochs == 2  # given: kept
    assert training_args.adam_epsilon == recipe["adam_epsilon"] == 1e-6 and training_args.warmup_steps == 0.06
    assert training_args.per_device_train_batch_size == 4 and model_args.head_learning_rate == recipe["head_learning_rate"]
    assert "learning_rate" not in applied and applied["adam_epsilon"] == 1e-6
    assert model_args.encoder_attention_dropout == recipe["encoder_attention_dropout"] == 0.0
    # Given on the command line, or through the encoder's own option: the recipe leaves it.
    model_args = ModelArguments(model_name_or_path="x", encoder_attention_dropout=0.1)
    apply_training_recipe("atlop", model_args, training_args, given_options(argv + ["--encoder_attention_dropout", "0.1"]))
    assert model_args.encoder_attention_dropout == 0.1


def test_training_recipe_adds_joined_documents_for_atlop_only_where_it_can():
    sys.path.insert(0, str(SCRIPT.parent))
    from run_docre import DataArguments, ModelArguments, apply_training_recipe, given_options
    from transformers import TrainingArguments

    def apply(method="atlop", argv=(), teacher=None, **data):
        model_args = ModelArguments(model_name_or_path="x", teacher_model_name_or_path=teacher)
        data_args = DataArguments(**data)
        training_args = TrainingArguments(output_dir="x", report_to="none")
        applied = apply_training_recipe(method, model_args, training_args, given_options(["--output_dir", "x", *argv]), data_args)
        return data_args, applied

    data_args, applied = apply()
    assert data_args.joined_train_fraction == 0.5 and data_args.joined_cross_pair_weight == 1.0
    assert data_args.joined_train_documents is None and applied["joined_train_fraction"] == 0.5
    for method in ("kd-docre", "dreeam", "bert-baseline"):  # measured for ATLOP only
        assert apply(method)[0].joined_train_fraction == 0.0
    # A count given (0 turns them off), or a teacher: no joined documents from the recipe.
    data_args, applied = apply(argv=["--joined_train_documents", "0"], joined_train_documents=0)
    assert data_args.joined_train_fraction == 0.0 and data_args.joined_cross_pair_weight == 1.0 and "joined_train_fraction" not in applied
    assert apply(teacher="t")[0].joined_train_fraction == 0.0
    # Drawn once: the fraction applies too.
    assert apply(joined_draw="once")[0].joined_train_fraction == 0.5
    # Other callers that pass no data arguments get the rest of the recipe as before.
    training_args = TrainingArguments(output_dir="x", report_to="none")
    assert "joined_train_fraction" not in apply_training_recipe("atlop", ModelArguments(model_name_or_path="x"), training_args, set())


def test_encoder_attention_dropout_is_set_under_the_encoders_own_name(encoder_dirs):
    sys.path.insert(0, str(SCRIPT.parent))
    from run_docre import ModelArguments, encoder_config_options

    for kind in ("bert", "roberta"):
        options = encoder_config_options(ModelArguments(model_name_or_path=encoder_dirs[kind], encoder_attention_dropout=0.0))
        assert options == {"attention_probs_dropout_prob": 0.0}
    explicit = ModelArguments(model_name_or_path=encoder_dirs["bert"], encoder_attention_dropout=0.0,
                              encoder_config_overrides="attention_probs_dropout_prob=0.1")
    assert encoder_config_options(explicit) == {"attention_probs_dropout_prob": 0.1}
    assert encoder_config_options(ModelArguments(model_name_or_path=encoder_dirs["bert"])) == {}


@pytest.mark.slow
def test_card_carries_evaluation_and_test_scores_licence_and_limitations(encoder_dirs, files, tmp_path):
    output_dir = tmp_path / "out"
    result = _run(arguments(encoder_dirs, files, output_dir, 1) + ["--license", "apache-2.0"])
    assert result.returncode == 0, result.stderr[-3000:]
    card = (output_dir / "README.md").read_text()
    evaluation = json.loads((output_dir / "eval_results.json").read_text())
    predicted = json.loads((output_dir / "predict_results.json").read_text())
    assert "Not evaluated" not in card and "license: apache-2.0" in card and "pipeline_tag: text-classification" in card
    assert f"value: {round(100 * evaluation['eval_f1'], 2)}" in card and f"value: {round(100 * predicted['predict_f1'], 2)}" in card
    assert "split: test" in card and "## Limitations" in card
    # Each split is named by its own file: the training file is never called the test set, and no invented address.
    assert "On test.json:" in card and "train.json (test)" not in card and "github.com/hf-docre" not in card
    assert "Training recipe of atlop" in result.stderr and "'encoder_attention_dropout': 0.0" in result.stderr
    # ATLOP's recipe adds joined training documents: half as many as the 4 training documents.
    assert "'joined_train_fraction': 0.5" in result.stderr and "Added 2 joined training documents per epoch" in result.stderr
    assert DocREModel.from_pretrained(output_dir).config.encoder.attention_probs_dropout_prob == 0.0
