"""Corpus jobs across processes (torchrun, gloo, 2 CPU processes), resumable: `hf-docre predict`,
`write_pair_scores` and `write_teacher_logits`.

Each job runs as one process and as two under torchrun; the outputs must be identical. A rank is then killed
part-way (`os._exit` inside its second write, as a kill would leave it) and the job rerun: the result must equal the
uninterrupted run, and the log must say what was skipped. A folder written with another model is refused."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import SMALL_HEAD, short_document

from hf_docre import DocREModel
from hf_docre.corpus import CorpusJob, SequenceDocuments, shard_bounds

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}  # the same arithmetic in every process
PORTS = iter(range(29610, 29700))

# Wraps a job so that rank KILL_RANK dies (os._exit, no clean-up) during its KILL_AT-th flush to disk: what a kill
# or a lost machine leaves behind.
KILLER = """
import os, sys
_calls = [0]
_fsync = os.fsync
def _dying_fsync(fd):
    _fsync(fd)
    if int(os.environ.get("RANK", 0)) == int(os.environ["KILL_RANK"]):
        _calls[0] += 1
        if _calls[0] == int(os.environ["KILL_AT"]):
            os._exit(9)
if os.environ.get("KILL_RANK") is not None:
    os.fsync = _dying_fsync
"""


def _run(script, args=(), processes=1, kill=None, check=True):
    """Run `script` (python source) as one process or under torchrun; `kill=(rank, nth flush)` kills that rank."""
    env = dict(ENV)
    if kill is not None:
        env.update(KILL_RANK=str(kill[0]), KILL_AT=str(kill[1]))
    if processes == 1:
        env.pop("RANK", None)
        env.pop("WORLD_SIZE", None)
        command = [sys.executable, "-c", KILLER + script, *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", f"--master_port={next(PORTS)}",
                   "--no-python", sys.executable, "-c", KILLER + script, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    if check:
        assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-6000:])
    return done


@pytest.fixture(scope="module")
def corpus(redocred_documents, tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    documents = [short_document(d, 4) for d in redocred_documents[100:123]]  # 23: uneven shards and windows
    path = folder / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in documents))
    return path, documents


@pytest.fixture(scope="module")
def models(encoder_dirs, relation_info, tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus-models")
    paths = {}
    for name, seed in (("model", 0), ("other", 1)):
        torch.manual_seed(seed)
        model = DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), **SMALL_HEAD)
        model.save_pretrained(folder / name)
        paths[name] = str(folder / name)
    return paths


def test_shards_are_contiguous_cover_everything_and_align_to_windows():
    for n in (0, 1, 7, 23, 100):
        for world in (1, 2, 3, 8):
            for align in (1, 4, 16):
                bounds = [shard_bounds(n, r, world, align) for r in range(world)]
                assert bounds[0][0] == 0 and bounds[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
                assert all(start % align == 0 or start == n for start, _ in bounds)


def test_a_part_torn_by_a_kill_is_cut_and_resumed(tmp_path):
    manifest = {"job": "test"}
    job = CorpusJob(str(tmp_path / "parts"), manifest, 5)
    assert job.begin()
    job.write([(0, "a"), (1, "b")])
    job._handle.close()
    with open(job.part_path(), "a") as handle:
        handle.write('{"i":2,"r":"c"')  # the kill came mid-line
    job = CorpusJob(str(tmp_path / "parts"), manifest, 5)
    logged = []
    job.log = logged.append
    assert job.begin()
    assert job.done_indices == {0, 1} and "skipping 2 document(s)" in logged[0]
    assert list(job.todo()) == [2, 3, 4]
    job.write([(3, "d"), (2, "c"), (4, "e")])  # out of order, as length bucketing writes
    written = []
    complete, _ = job.finish(lambda records: written.extend(records))
    assert complete and written == [(0, "a"), (1, "b"), (2, "c"), (3, "d"), (4, "e")]
    assert not os.path.exists(job.part_path())  # merged parts are removed; the manifest says complete
    job = CorpusJob(str(tmp_path / "parts"), manifest, 5)
    job.log = logged.append
    assert not job.begin() and "complete" in logged[-1]  # a finished run is not redone
    assert CorpusJob(str(tmp_path / "parts"), manifest, 5, overwrite=True).begin()  # unless asked
    with pytest.raises(ValueError, match="differs in job"):
        CorpusJob(str(tmp_path / "parts"), {"job": "other"}, 5).begin()


def test_predict_corpus_in_python_keeps_order_with_length_buckets(models, corpus, tmp_path):
    from transformers import pipeline

    _, documents = corpus
    pipe = pipeline("doc-relation-extraction", model=models["model"])
    options = dict(postprocess_params={"threshold": 0.0, "top_k": 3})
    bucketed = predict_corpus_lines(pipe, documents, tmp_path / "a.jsonl", bucket_window=4, batch_size=3, **options)
    in_order = predict_corpus_lines(pipe, SequenceDocuments(documents), tmp_path / "b.jsonl", bucket_window=1, batch_size=3, **options)
    assert [r["title"] for r in bucketed] == [d["title"] for d in documents]
    assert [[(x["head"]["index"], x["tail"]["index"], x["relation_id"]) for x in r["relations"]] for r in bucketed] == \
        [[(x["head"]["index"], x["tail"]["index"], x["relation_id"]) for x in r["relations"]] for r in in_order]
    for a, b in zip(bucketed, in_order):
        assert [x["score"] for x in a["relations"]] == pytest.approx([x["score"] for x in b["relations"]], abs=1e-5)
    # a datasets.Dataset is read row by row; the same windows give the same bytes
    from datasets import Dataset

    from_dataset = predict_corpus_lines(pipe, Dataset.from_list(documents), tmp_path / "c.jsonl", bucket_window=4, batch_size=3,
                                        **options)
    assert from_dataset == bucketed


def predict_corpus_lines(pipe, documents, output, **kwargs):
    from hf_docre.corpus import predict_corpus

    summary = predict_corpus(pipe, documents, str(output), progress=False, **kwargs)
    assert summary["complete"] and summary["documents"] == len(documents)
    return [json.loads(line) for line in output.read_text().splitlines()]


PREDICT = """
import sys
from hf_docre.cli import main
sys.exit(main(["predict", "--quiet", "--batch_size", "3", "--bucket_window", "2", "--threshold", "0", "--top_k", "5", *sys.argv[1:]]))
"""


@pytest.mark.slow
def test_predict_across_two_processes_equals_one_and_resumes_after_a_kill(models, corpus, tmp_path):
    source, documents = corpus
    one, two, killed = tmp_path / "one.jsonl", tmp_path / "two.jsonl", tmp_path / "killed.jsonl"
    _run(PREDICT, ["--model", models["model"], "--input", str(source), "--output", str(one)])
    done = _run(PREDICT, ["--model", models["model"], "--input", str(source), "--output", str(two)], processes=2)
    assert "merged 2 parts: 23 documents" in done.stderr
    assert two.read_bytes() == one.read_bytes()
    assert [json.loads(line)["title"] for line in one.read_text().splitlines()] == [d["title"] for d in documents]
    # rank 1 is killed right after writing its second batch; the rerun resumes and writes the same file
    broken = _run(PREDICT, ["--model", models["model"], "--input", str(source), "--output", str(killed)], processes=2,
                  kill=(1, 2), check=False)
    assert broken.returncode != 0 and not killed.exists()
    done = _run(PREDICT, ["--model", models["model"], "--input", str(source), "--output", str(killed)], processes=2)
    assert "rank 1: resuming, skipping 6 document(s)" in done.stderr, done.stderr[-3000:]  # its two batches written
    assert killed.read_bytes() == one.read_bytes()
    # finished: a rerun does nothing; another model is refused (nothing deleted)
    done = _run(PREDICT, ["--model", models["model"], "--input", str(source), "--output", str(killed)], processes=2)
    assert "this run is complete (23 documents); nothing to do" in done.stderr
    refused = _run(PREDICT, ["--model", models["other"], "--input", str(source), "--output", str(killed)], check=False)
    assert refused.returncode == 2 and "holds another run (it differs in model" in refused.stderr
    assert killed.read_bytes() == one.read_bytes()
    _run(PREDICT, ["--model", models["other"], "--input", str(source), "--output", str(killed), "--overwrite"])
    assert killed.read_bytes() != one.read_bytes()


SHARD_JOBS = """
import json, sys
from hf_docre import DocREFeaturizer, DocREModel
job, model_dir, data, folder = sys.argv[1:5]
documents = [json.loads(line) for line in open(data)]
if job == "scores":
    from hf_docre.denoising import write_pair_scores
    from hf_docre.pretraining_docre import DocREForDenoisingPreTraining
    model = DocREForDenoisingPreTraining.from_pretrained(model_dir)
    features = DocREFeaturizer.from_model(model).featurize(documents, with_labels=False)
    write_pair_scores(model, features, folder, batch_size=2, shard_size=5, progress=False)
else:
    from hf_docre.distillation import write_teacher_logits
    model = DocREModel.from_pretrained(model_dir)
    features = DocREFeaturizer.from_model(model).featurize(documents)
    stored = write_teacher_logits(model, features, folder, batch_size=2, shard_size=5, progress=False)
    assert len(stored) == len(documents)
"""


@pytest.fixture(scope="module")
def ranker_dirs(encoder_dirs, relation_info, tmp_path_factory):
    from hf_docre.pretraining_docre import DocREForDenoisingPreTraining

    folder = tmp_path_factory.mktemp("rankers")
    paths = {}
    for name, seed in (("model", 0), ("other", 1)):
        torch.manual_seed(seed)
        ranker = DocREForDenoisingPreTraining.from_encoder(encoder_dirs["bert"], relations=list(relation_info), method="dsdocre",
                                                           pretraining_tasks=["relation_detection"], emb_size=32,
                                                           pretraining_relation_size=16)
        ranker.save_pretrained(folder / name)
        paths[name] = str(folder / name)
    return paths


def _folder_contents(folder, job):
    if job == "scores":
        from hf_docre.denoising import load_pair_scores

        return load_pair_scores(str(folder))
    from hf_docre.distillation import load_teacher_logits

    return [dict(row) for row in load_teacher_logits(str(folder))]


@pytest.mark.slow
@pytest.mark.parametrize("job", ["scores", "teacher"])
def test_shard_jobs_across_two_processes_equal_one_and_resume_after_a_kill(job, models, ranker_dirs, corpus, tmp_path):
    source, documents = corpus
    model = ranker_dirs["model"] if job == "scores" else models["model"]
    other = ranker_dirs["other"] if job == "scores" else models["other"]
    one, two, killed = tmp_path / "one", tmp_path / "two", tmp_path / "killed"
    _run(SHARD_JOBS, [job, model, str(source), str(one)])
    _run(SHARD_JOBS, [job, model, str(source), str(two)], processes=2)
    reference = _folder_contents(one, job)
    assert len(reference) == len(documents)
    assert _folder_contents(two, job) == reference
    assert sorted(os.listdir(two)) == sorted(os.listdir(one))  # the same files: shards and the manifest
    broken = _run(SHARD_JOBS, [job, model, str(source), str(killed)], processes=2, kill=(1, 2), check=False)
    assert broken.returncode != 0
    assert any(name.endswith(".progress.jsonl") for name in os.listdir(killed)), "rank 1 left a shard in progress"
    done = _run(SHARD_JOBS, [job, model, str(source), str(killed)], processes=2)
    assert "rank 1: resuming shard 2, skipping 4 document(s)" in done.stderr, done.stderr[-3000:]  # two batches of 2
    assert _folder_contents(killed, job) == reference
    assert not any(name.endswith(".progress.jsonl") for name in os.listdir(killed))
    refused = _run(SHARD_JOBS, [job, other, str(source), str(killed)], check=False)
    assert refused.returncode != 0 and "fingerprint" in refused.stderr
