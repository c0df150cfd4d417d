import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import SMALL_HEAD, short_document
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel

from hf_docre import (
    AutoModelForDocumentRelationExtraction,
    DocREConfig,
    DocREDataCollator,
    DocREFeaturizer,
    DocREModel,
    adaptive_thresholding_loss,
    plan_windows,
)
from hf_docre.layers_docre import LAST_LAYER_ATTENTION
from hf_docre.processing_docre import feature_pairs, num_feature_pairs


@pytest.fixture(scope="module")
def relations(relation_info):
    return list(relation_info)


@pytest.fixture(scope="module", params=["bert", "roberta"])
def model(request, encoder_dirs, relations):
    torch.manual_seed(0)
    return DocREModel.from_encoder(encoder_dirs[request.param], relations=relations, **SMALL_HEAD).eval()


def batch_of(model, documents):
    features = DocREFeaturizer.from_model(model).featurize(documents)
    return DocREDataCollator.from_model(model)(features), features


def test_config_and_auto_classes(model, relations):
    config = model.config
    assert config.model_type == "docre" and config.id2label[0] == "NA"
    assert config.num_relations == len(relations) + 1
    assert config.window_size == 128  # from the tiny tokenizer / position table
    assert isinstance(AutoConfig.for_model("docre"), DocREConfig)
    assert AutoModelForDocumentRelationExtraction.from_config(config).__class__ is DocREModel
    assert AutoModel.from_config(config).__class__ is DocREModel


def test_from_encoder_keeps_pretrained_weights(encoder_dirs, model):
    kind = model.config.encoder.model_type
    pretrained = AutoModel.from_pretrained(encoder_dirs[kind])
    ours = model.encoder.state_dict()
    for name, tensor in pretrained.state_dict().items():
        if not name.startswith("pooler."):
            assert torch.equal(ours[name], tensor), name
    assert model.encoder.pooler is None


def test_from_encoder_changes_encoder_config_options_and_refuses_unknown_ones(encoder_dirs, relations, tmp_path):
    model = DocREModel.from_encoder(encoder_dirs["bert"], relations=relations, encoder_config={"attention_probs_dropout_prob": 0.0}, **SMALL_HEAD)
    assert model.config.encoder.attention_probs_dropout_prob == 0.0
    assert model.encoder.config.attention_probs_dropout_prob == 0.0
    assert model.config.encoder.hidden_dropout_prob == AutoConfig.from_pretrained(encoder_dirs["bert"]).hidden_dropout_prob
    model.save_pretrained(tmp_path)
    assert DocREModel.from_pretrained(tmp_path).config.encoder.attention_probs_dropout_prob == 0.0
    with pytest.raises(ValueError, match=r"\['attention_dropout'\] not options of .*attention_probs_dropout_prob"):
        DocREModel.from_encoder(encoder_dirs["bert"], relations=relations, encoder_config={"attention_dropout": 0.0}, **SMALL_HEAD)


def test_attention_hook_matches_eager_and_materialises_only_the_last_layer(model):
    ids = torch.randint(5, model.config.encoder.vocab_size, (2, 20))
    mask = torch.ones_like(ids)
    mask[1, 14:] = 0
    with torch.no_grad():
        hooked = model.encoder(input_ids=ids, attention_mask=mask, output_attentions=True)
        model.encoder.set_attn_implementation("eager")
        try:
            eager = model.encoder(input_ids=ids, attention_mask=mask, output_attentions=True)
        finally:
            model.encoder.set_attn_implementation(LAST_LAYER_ATTENTION)
    assert len(hooked.attentions) == 1  # sdpa layers return no weights
    assert torch.allclose(hooked.attentions[-1], eager.attentions[-1], atol=1e-6)
    assert torch.allclose(hooked.last_hidden_state, eager.last_hidden_state, atol=1e-5)


def test_document_alone_equals_document_in_padded_batch(model, redocred_documents):
    documents = [redocred_documents[1], short_document(redocred_documents[2]), redocred_documents[3]]
    batch, _ = batch_of(model, documents)
    with torch.no_grad():
        together = model(**batch).logits
        for b, document in enumerate(documents):
            single, features = batch_of(model, [document])
            alone = model(**single).logits[0]
            num_pairs = num_feature_pairs(features[0])
            assert torch.allclose(together[b, :num_pairs], alone[:num_pairs], atol=1e-5), document["title"]
            # Padded pairs never decode to a relation.
            assert not model.decode(together[b, num_pairs:])[..., 1:].any()


def test_short_document_through_long_input_path_equals_plain_forward(model, redocred_documents):
    short = short_document(redocred_documents[5])
    long = redocred_documents[6]
    single, features = batch_of(model, [short])
    assert single["input_ids"].shape[1] <= model.config.window_size  # plain forward
    mixed, mixed_features = batch_of(model, [short, long])
    assert len(mixed_features[1]["input_ids"]) > model.config.window_size  # the batch takes the window path
    with torch.no_grad():
        plain = model(**single, output_context_weights=True)
        windowed = model(**mixed, output_context_weights=True)
    num_pairs = num_feature_pairs(features[0])
    length = single["input_ids"].shape[1]
    assert torch.allclose(windowed.logits[0, :num_pairs], plain.logits[0, :num_pairs], atol=1e-5)
    assert torch.allclose(windowed.context_weights[0, :num_pairs, :length], plain.context_weights[0, :num_pairs], atol=1e-6)


def test_window_plan_covers_every_token():
    for length in [10, 128, 129, 200, 377, 1000, 4096]:
        for stride in [16, 63, 126]:
            plan = plan_windows([length], window_size=128, stride=stride, prefix=1, suffix=1)
            content = length - 2
            covered = set()
            for _, start, size in plan:
                assert size + 2 <= 128 and start >= 0
                covered.update(range(start, start + size))
            assert covered == set(range(content))
            assert plan[-1][1] + plan[-1][2] == content
    assert plan_windows([50], 128, 63, 1, 1) == [(0, 0, 48)]


def reference_encode(model, input_ids, mention_index):
    """Window by window with Python loops: hidden states averaged over windows that keep a token; each mention's
    attention row renormalised over the kept columns of each window and averaged over windows."""
    config = model.config
    prefix, suffix = config.window_prefix_tokens, config.window_suffix_tokens
    length = len(input_ids)
    plan = plan_windows([length], config.effective_window_size, config.effective_window_stride, prefix, suffix)
    content_length = length - prefix - suffix
    hidden_sum = torch.zeros(length, config.encoder.hidden_size)
    count = torch.zeros(length)
    rows = {}
    for _, start, size in plan:
        positions = list(range(prefix)) + list(range(prefix + start, prefix + start + size)) + list(range(length - suffix, length))
        first, last = start == 0, start + size == content_length
        keep = [first] * prefix + [True] * size + [last] * suffix
        window_ids = torch.tensor([[input_ids[p] for p in positions]])
        all_rows = torch.arange(window_ids.shape[1])[None]
        hidden, attention = model._encoder_forward(window_ids, torch.ones_like(window_ids), all_rows)
        for j, g in enumerate(positions):
            if keep[j]:
                hidden_sum[g] += hidden[0, j]
                count[g] += 1
        for mentions in mention_index:
            for g in mentions:
                if not prefix + start <= g < prefix + start + size:
                    continue
                j = positions.index(g)
                row = torch.zeros(attention.shape[1], length)
                for k, gk in enumerate(positions):
                    if keep[k]:
                        row[:, gk] += attention[0, :, j, k]
                if not (first and last):
                    row = row / row.sum(-1, keepdim=True)
                rows.setdefault(g, []).append(row)
    entity_attention = torch.stack(
        [torch.stack([torch.stack(rows[g]).mean(0) for g in mentions]).mean(0) for mentions in mention_index]
    )
    return hidden_sum / count[:, None], entity_attention


def test_windowed_encoding_matches_reference(model, redocred_documents):
    document = redocred_documents[7]
    batch, features = batch_of(model, [short_document(redocred_documents[8]), document])
    feature = features[1]
    assert len(feature["input_ids"]) > 2 * model.config.window_size  # at least three windows
    with torch.no_grad():
        encoded = model.encode(batch["input_ids"], batch["attention_mask"], batch["mention_index"])
        expected_hidden, expected_attention = reference_encode(model, feature["input_ids"], feature["mention_index"])
    length = len(feature["input_ids"])
    num_entities = len(feature["mention_index"])
    assert torch.allclose(encoded.sequence_output[1, :length], expected_hidden, atol=1e-5)
    assert torch.allclose(encoded.entity_attention[1, :num_entities, :, :length], expected_attention, atol=1e-6)
    # Each entity's attention over the document is a distribution per head.
    sums = encoded.entity_attention[1, :num_entities].sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)


def test_loss_is_the_mean_atl_over_real_pairs_and_gradients_reach_encoder_and_head(model, redocred_documents):
    model.train()
    try:
        model.zero_grad()
        torch.manual_seed(0)
        batch, features = batch_of(model, [redocred_documents[10], short_document(redocred_documents[11])])
        output = model(**batch)
        # Real pairs the head scored: in these long documents (the tiny encoder's window is 128 tokens) pairs whose
        # entities share no window are left unscored and take no loss (distant_pairs="no_relation").
        # They count in the mean with a loss of 0.
        labeled = batch["labels"][..., 0] != -100
        real = labeled & (output.scored_pairs > 0)
        assert 0 < real.sum() < labeled.sum()
        torch.manual_seed(0)
        expected = adaptive_thresholding_loss(model(**batch).logits[real], batch["labels"][real]).sum() / labeled.sum()
        assert torch.allclose(output.loss, expected, atol=1e-6)
        output.loss.backward()
        assert model.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
        assert model.encoder.encoder.layer[-1].attention.self.query.weight.grad.abs().sum() > 0
        for module in (model.head.head_extractor, model.head.tail_extractor, model.head.bilinear):
            assert module.weight.grad.abs().sum() > 0
    finally:
        model.eval()


def test_context_weights_are_distributions(model, redocred_documents):
    batch, features = batch_of(model, [redocred_documents[12], short_document(redocred_documents[13])])
    with torch.no_grad():
        output = model(**batch, output_context_weights=True)
        weights = output.context_weights
        encoded = model.encode(batch["input_ids"], batch["attention_mask"], batch["mention_index"])
        model.config.distant_pairs = "entity_context"
        own = model(**batch, output_context_weights=True)
        model.config.distant_pairs = "no_relation"
    for b, feature in enumerate(features):
        num_pairs = num_feature_pairs(feature)
        sums = weights[b, :num_pairs].sum(-1)
        # A distribution for every scored pair; pairs whose entities share no window are not scored (no context).
        pairs = torch.from_numpy(feature_pairs(feature))
        scored = output.scored_pairs[b, :num_pairs] > 0
        assert torch.allclose(sums[scored], torch.ones_like(sums[scored]), atol=1e-5)
        assert (sums[~scored] == 0).all()
        if len(feature["input_ids"]) <= model.config.window_size:
            assert scored.all()
        else:
            assert torch.equal(scored, encoded.shared_window[b, pairs[:, 0], pairs[:, 1]])
        # With distant_pairs="entity_context" every pair is scored, distant ones with their entities' own attention.
        if b == 0:
            assert not scored.all()  # the first document is long enough to have distant pairs
        own_sums = own.context_weights[b, :num_pairs].sum(-1)
        assert (own.scored_pairs[b, :num_pairs] == 1).all()
        assert torch.allclose(own_sums, torch.ones_like(own_sums), atol=1e-5)
        assert torch.allclose(own.context_weights[b, :num_pairs][scored], weights[b, :num_pairs][scored], atol=1e-6)
        assert (weights[b, num_pairs:] == 0).all()
        assert (weights[b, :, len(feature["input_ids"]):] == 0).all()


def test_single_entity_document_yields_no_pairs(model):
    document = {"title": "alone", "sents": [["Paris", "is", "big", "."]], "vertexSet": [[{"name": "Paris", "pos": [0, 1], "sent_id": 0}]], "labels": []}
    batch, features = batch_of(model, [document])
    assert "pair_index" not in features[0] and len(feature_pairs(features[0])) == 0
    output = model(**batch)
    assert output.logits.shape[:2] == (1, 1)
    assert output.loss.item() == 0.0
    assert model.decode(output.logits)[0, 0, 0]  # the padded slot is NA


@pytest.mark.parametrize(
    "options",
    [
        {"loss": "bce", "global_threshold": 0.3},
        {"mention_pooling": "max", "use_context_pooling": False},
        {"mention_pooling": "mean"},
        {"entity_marker": None},
        {"window_stride": 40},
    ],
)
def test_head_options(encoder_dirs, relations, redocred_documents, options):
    torch.manual_seed(0)
    model = DocREModel.from_encoder(encoder_dirs["bert"], relations=relations, **SMALL_HEAD, **options)
    for key, value in options.items():
        assert getattr(model.config, key) == value
    batch, _ = batch_of(model, [redocred_documents[14], short_document(redocred_documents[15])])
    output = model(**batch, output_context_weights=True)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    assert (output.context_weights is None) == (not model.config.use_context_pooling)
    predicted = model.decode(output.logits)
    assert predicted.shape == output.logits.shape
    assert (predicted[..., 1:].sum(-1) <= model.config.max_relations_per_pair).all()


@pytest.mark.slow
def test_save_load_and_remote_code_give_identical_logits(model, redocred_documents, tmp_path):
    batch, _ = batch_of(model, [redocred_documents[20], short_document(redocred_documents[21])])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the other process computes with one thread too
    try:
        with torch.no_grad():
            expected = model(**batch).logits
    finally:
        torch.set_num_threads(threads)
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    files = set(os.listdir(folder))
    assert {"model.safetensors", "config.json", "modeling_docre.py", "configuration_docre.py", "losses_docre.py"} <= files
    assert "tokenizer.json" in files or "vocab.txt" in files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".ckpt")) for name in files)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_docre.DocREConfig", "AutoModel": "modeling_docre.DocREForRelationExtraction"}

    reloaded = DocREModel.from_pretrained(folder).eval()
    assert reloaded.tokenizer is not None
    with torch.no_grad():
        in_process = model(**batch).logits
        assert torch.equal(reloaded(**batch).logits, in_process)
        assert torch.equal(AutoModelForDocumentRelationExtraction.from_pretrained(folder).eval()(**batch).logits, in_process)

    # A process that cannot import hf_docre loads the folder through trust_remote_code.
    save_file({k: v.contiguous() for k, v in batch.items() if k != "labels"}, str(tmp_path / "batch.safetensors"))
    save_file({"logits": expected.contiguous()}, str(tmp_path / "expected.safetensors"))
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["hf_docre"] = None  # any "import hf_docre" now fails
        import torch
        torch.set_num_threads(1)
        from safetensors.torch import load_file
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        batch = load_file({str(tmp_path / "batch.safetensors")!r})
        expected = load_file({str(tmp_path / "expected.safetensors")!r})["logits"]
        with torch.no_grad():
            logits = model(**batch).logits
        # Bit-identical within a process (above); across processes kernels may pick other code paths
        # (memory alignment), so allow float rounding only.
        assert torch.allclose(logits, expected, rtol=1e-6, atol=1e-6), (logits - expected).abs().max()
        assert type(model.tokenizer).__name__ in ("BertTokenizer", "RobertaTokenizer"), type(model.tokenizer)
        print("REMOTE-OK", type(model).__name__)
        """
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REMOTE-OK DocREForRelationExtraction" in result.stdout
    assert "instantiate a model of type" not in result.stderr  # the tokenizer is loaded with the model's config


def test_bf16_autocast_and_bf16_weights(encoder_dirs, relations, redocred_documents):
    torch.manual_seed(0)
    model = DocREModel.from_encoder(encoder_dirs["bert"], relations=relations, **SMALL_HEAD)
    batch, _ = batch_of(model, [redocred_documents[16], short_document(redocred_documents[17])])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(**batch)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    assert model.head.bilinear.weight.grad.dtype == torch.float32 and torch.isfinite(model.head.bilinear.weight.grad).all()
    model.zero_grad()
    model = model.to(torch.bfloat16)
    output = model(**batch)
    assert output.logits.dtype == torch.bfloat16 and torch.isfinite(output.logits).all()
    output.loss.backward()
    assert torch.isfinite(model.encoder.embeddings.word_embeddings.weight.grad.float()).all()


def test_tune_global_threshold_sets_the_config(encoder_dirs, relations, redocred_documents):
    model = DocREModel.from_encoder(encoder_dirs["bert"], relations=relations, loss="bce", **SMALL_HEAD).eval()
    batch, _ = batch_of(model, [short_document(redocred_documents[18], 3)])
    with torch.no_grad():
        logits = model(**batch).logits
    threshold, f1 = model.tune_global_threshold(logits, batch["labels"], candidates=[0.2, 0.4, 0.6, 0.8])
    assert model.config.global_threshold == threshold and 0.0 <= f1 <= 1.0


def test_left_padding_is_refused(model, redocred_documents):
    batch, _ = batch_of(model, [short_document(redocred_documents[22]), short_document(redocred_documents[23], 3)])
    left = {k: v.clone() for k, v in batch.items()}
    left["attention_mask"] = batch["attention_mask"].flip(-1)
    with pytest.raises(ValueError, match="right-padded"):
        model(**left)
