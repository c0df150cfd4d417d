"""One shared tester: the model invariants, run over every registered method x {BERT, RoBERTa}.

A method gets these checks by being in `hf_docre.METHODS`; a pair head by being in `hf_docre.PAIR_HEADS` (the toy
head at the end is registered from this file alone).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import SMALL_HEAD, short_document
from safetensors.torch import save_file
from torch import nn

from hf_docre import METHODS, PAIR_HEADS, DocREDataCollator, DocREFeaturizer, DocREModel, PairHead, register_pair_head
from hf_docre.processing_docre import num_feature_pairs

KINDS = ("bert", "roberta")


def build(encoder_dirs, relation_info, method, kind, **options):
    torch.manual_seed(0)
    return DocREModel.from_encoder(encoder_dirs[kind], relations=list(relation_info), method=method,
                                   **{**SMALL_HEAD, **options})


def batch_of(model, documents, with_labels=True):
    features = DocREFeaturizer.from_model(model).featurize(documents, with_labels=with_labels)
    return DocREDataCollator.from_model(model)(features), features


@pytest.fixture(scope="module", params=[(m, k) for m in METHODS for k in KINDS], ids=lambda p: f"{p[0]}-{p[1]}")
def method_model(request, encoder_dirs, relation_info):
    method, kind = request.param
    return method, kind, build(encoder_dirs, relation_info, method, kind).eval()


def test_alone_equals_in_a_padded_batch(method_model, redocred_documents):
    method, _, model = method_model
    documents = [short_document(redocred_documents[20], 3), redocred_documents[21], short_document(redocred_documents[22])]
    batch, features = batch_of(model, documents, with_labels=False)
    with torch.no_grad():
        together = model(**batch).logits
        for b, document in enumerate(documents):
            single, _ = batch_of(model, [document], with_labels=False)
            alone = model(**single).logits[0]
            pairs = num_feature_pairs(features[b])
            torch.testing.assert_close(together[b, :pairs], alone[:pairs], atol=2e-5, rtol=1e-4, msg=f"{method} {document['title']}")
            assert not model.decode(together[b, pairs:])[..., 1:].any()


def test_long_path_leaves_a_short_document_unchanged(method_model, redocred_documents):
    method, _, model = method_model
    short, long = short_document(redocred_documents[23]), redocred_documents[24]
    single, features = batch_of(model, [short], with_labels=False)
    mixed, mixed_features = batch_of(model, [short, long], with_labels=False)
    assert len(mixed_features[1]["input_ids"]) > model.config.effective_window_size  # the batch takes the window path
    with torch.no_grad():
        plain, windowed = model(**single).logits, model(**mixed).logits
    pairs = num_feature_pairs(features[0])
    torch.testing.assert_close(windowed[0, :pairs], plain[0, :pairs], atol=2e-5, rtol=1e-4, msg=method)
    assert torch.isfinite(windowed).all()


def test_every_parameter_gets_a_gradient(encoder_dirs, relation_info, redocred_documents):
    for method in METHODS:
        for kind in KINDS:
            model = build(encoder_dirs, relation_info, method, kind).train()
            batch, _ = batch_of(model, [redocred_documents[25], short_document(redocred_documents[26])])
            model(**batch).loss.backward()
            missing = [name for name, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
            assert not missing, f"{method}-{kind}: no gradient for {missing[:5]}"


def test_bf16_autocast_gives_finite_loss_and_gradients(encoder_dirs, relation_info, redocred_documents):
    for method in METHODS:
        model = build(encoder_dirs, relation_info, method, "roberta" if method == "kd-docre" else "bert").train()
        batch, _ = batch_of(model, [redocred_documents[27]])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = model(**batch)
        assert torch.isfinite(output.loss), method
        output.loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None), method


@pytest.mark.slow
def test_save_load_and_remote_code_for_every_method(encoder_dirs, relation_info, redocred_documents, tmp_path):
    """Saved and reloaded in-process, and loaded through trust_remote_code in a process without hf_docre: the same
    logits, for every method x encoder (one subprocess for all of them)."""
    jobs = []
    for method in METHODS:
        for kind in KINDS:
            model = build(encoder_dirs, relation_info, method, kind).eval()
            batch, _ = batch_of(model, [redocred_documents[28], short_document(redocred_documents[29])], with_labels=False)
            folder = tmp_path / f"{method}-{kind}"
            model.save_pretrained(folder)
            with torch.no_grad():
                expected = model(**batch).logits
                reloaded = DocREModel.from_pretrained(folder).eval()(**batch).logits
            assert torch.equal(reloaded, expected), f"{method}-{kind}"
            save_file(dict(batch), str(folder / "batch.safetensors"))
            save_file({"logits": expected.contiguous()}, str(folder / "expected.safetensors"))
            jobs.append(str(folder))
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["hf_docre"] = None  # any "import hf_docre" now fails
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModel
        for folder in {jobs!r}:
            model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            batch = load_file(folder + "/batch.safetensors")
            expected = load_file(folder + "/expected.safetensors")["logits"]
            with torch.no_grad():
                logits = model(**batch).logits
            assert torch.allclose(logits, expected, rtol=1e-5, atol=1e-5), (folder, (logits - expected).abs().max())
            print("REMOTE-OK", folder)
        """
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("REMOTE-OK") == len(jobs)


class ToyDotHead(PairHead):
    """A pair head in a few lines: a per-relation dot product of projected head and tail embeddings."""

    def __init__(self, config, new_encoder=None):
        super().__init__(config, new_encoder)
        self.project = nn.Linear(config.encoder.hidden_size, config.num_relations * 8)

    def forward(self, pairs):
        head, tail = pairs.head_and_tail(self.project(pairs.entity_embeddings))
        return (head.view(len(head), -1, 8) * tail.view(len(tail), -1, 8)).sum(-1)


def test_a_new_pair_head_needs_only_the_registry(encoder_dirs, relation_info, redocred_documents, tmp_path):
    register_pair_head("toy_dot", ToyDotHead, exist_ok=True)
    try:
        model = build(encoder_dirs, relation_info, "atlop", "bert", pair_head="toy_dot", use_context_pooling=False)
        assert isinstance(model.head, ToyDotHead)
        batch, _ = batch_of(model, [redocred_documents[30]])
        output = model(**batch)
        output.loss.backward()
        assert model.head.project.weight.grad.abs().sum() > 0
        model.save_pretrained(tmp_path / "toy")
        assert json.loads((tmp_path / "toy" / "config.json").read_text())["pair_head"] == "toy_dot"
        with torch.no_grad():
            torch.testing.assert_close(DocREModel.from_pretrained(tmp_path / "toy").eval()(**batch).logits,
                                       model.eval()(**batch).logits)
    finally:
        PAIR_HEADS.pop("toy_dot", None)
    with pytest.raises(ValueError, match="unknown pair head 'toy_dot'"):
        build(encoder_dirs, relation_info, "atlop", "bert", pair_head="toy_dot")


def test_the_readme_methods_table_lists_every_registered_method():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("| `method` | paper | what it sets |", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"^\| `([a-z-]+)`", table, flags=re.M)
    assert sorted(listed) == sorted(METHODS)
    for name, method in METHODS.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}`"))
        assert method.paper.split(",")[0] in row, (name, method.paper)  # "Zhou et al. 2021", ...


def test_the_readme_options_table_lists_every_config_option():
    import inspect
    import re
    from pathlib import Path

    from hf_docre import DocREConfig

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("### Options (`DocREConfig`", 1)[1].split("\n\n", 2)[1]
    listed = set(re.findall(r"`([a-z_]+)`", "\n".join(line.split("|")[1] for line in table.splitlines() if line.startswith("|"))))
    options = set(inspect.signature(DocREConfig.__init__).parameters) - {"self", "kwargs", "encoder", "relations", "relation_names"}
    options |= {name for head in PAIR_HEADS.values() for name in head.options}  # the pair heads' own options
    assert sorted(options - listed) == []
    # Options with a fixed set of values are typed Literal[...] and checked from the type.
    literal = DocREConfig.literal_options()
    from hf_docre.losses_docre import PAIR_LOSSES

    assert set(literal["loss"]) == set(PAIR_LOSSES)
    for name in literal:
        with pytest.raises(ValueError, match=f"`{name}` must be one of"):
            DocREConfig(**{name: "not-a-value"})
