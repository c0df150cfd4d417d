"""DSDocRE (Xiao et al. 2020): indexed markers, the fine-tuning head and loss, and the pre-training tasks' losses
against hand computations."""

import pytest
import torch
from conftest import short_document
from torch import nn

from hf_docre import (
    DocREConfig,
    DocREDataCollator,
    DocREFeaturizer,
    DocREForDenoisingPreTraining,
    DocREInputError,
    DocREModel,
)
from hf_docre.decoding_docre import decode_relations
from hf_docre.layers_docre import EntityPairBilinear
from hf_docre.losses_docre import binary_loss_with_na

SMALL = dict(emb_size=16, pretraining_relation_size=6)


def test_entity_level_bilinear_equals_nn_bilinear_forward_and_backward():
    torch.manual_seed(0)
    layer = EntityPairBilinear(5, 5, 3).double()
    reference = nn.Bilinear(5, 5, 3).double()
    reference.load_state_dict(layer.state_dict())
    entities = torch.randn(2, 4, 5, dtype=torch.float64, requires_grad=True)
    pair_batch, heads, tails = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 3, 1, 2, 0]), torch.tensor([1, 2, 0, 3, 2])
    ours = layer.pairs(entities, pair_batch, heads, tails)
    theirs = reference(entities[pair_batch, heads], entities[pair_batch, tails])
    torch.testing.assert_close(ours, theirs)
    weights = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * weights).sum(), [entities, layer.weight, layer.bias])
    expected = torch.autograd.grad((theirs * weights).sum(), [entities, reference.weight, reference.bias])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


def test_bce_na_is_the_element_mean_over_all_columns_and_decoding_is_argmax():
    torch.manual_seed(0)
    logits = torch.randn(7, 5)
    labels = torch.zeros(7, 5)
    labels[[0, 1, 2], [0, 3, 1]] = 1
    labels[3, [2, 4]] = 1
    labels[4:, 0] = 1
    per_pair = binary_loss_with_na(logits, labels)
    assert per_pair.shape == (7,)
    torch.testing.assert_close(per_pair.mean(), nn.BCEWithLogitsLoss()(logits, labels))
    predicted = decode_relations(logits, "bce_na", max_relations_per_pair=1)
    torch.testing.assert_close(predicted.float().argmax(-1), logits.argmax(-1))
    assert (predicted.sum(-1) == 1).all()


@pytest.fixture(scope="module", params=["bert", "roberta"])
def dsdocre_model(request, encoder_dirs, relation_info):
    torch.manual_seed(0)
    return DocREModel.from_encoder(encoder_dirs[request.param], relations=list(relation_info), method="dsdocre", **SMALL)


def test_indexed_markers_are_one_token_each_and_mentions_point_at_their_own_entity(dsdocre_model, redocred_documents):
    model = dsdocre_model
    tokenizer = model.tokenizer
    document = redocred_documents[3]
    featurizer = DocREFeaturizer.from_model(model)
    feature = featurizer(document)
    ids = feature["input_ids"]
    words = featurizer._word_tokenizer()
    for e, mentions in enumerate(document["vertexSet"]):
        start_id = tokenizer.convert_tokens_to_ids(f"[unused{2 * e + 1}]")
        end_id = tokenizer.convert_tokens_to_ids(f"[unused{2 * e + 2}]")
        assert start_id != tokenizer.unk_token_id
        assert words.encode([f"[unused{2 * e + 1}]"], is_pretokenized=True, add_special_tokens=False).ids == [start_id]
        assert sum(i == start_id for i in ids) == len(mentions) == sum(i == end_id for i in ids)
        assert all(ids[position] == start_id for position in feature["mention_index"][e])
    assert len(tokenizer) <= model.config.encoder.vocab_size == model.encoder.get_input_embeddings().weight.shape[0]


def test_coinciding_mentions_of_two_entities_get_their_own_markers(dsdocre_model):
    document = {"title": "nested", "sents": [["Paris", "Saint", "Germain", "won", "."]], "labels": [],
                "vertexSet": [[{"name": "Paris Saint Germain", "sent_id": 0, "pos": [0, 3], "type": "ORG"}],
                              [{"name": "Paris", "sent_id": 0, "pos": [0, 1], "type": "LOC"}]]}
    featurizer = DocREFeaturizer.from_model(dsdocre_model)
    tokens = dsdocre_model.tokenizer.convert_ids_to_tokens(featurizer(document)["input_ids"])
    assert tokens[1:4] == ["[unused1]", "[unused3]", tokens[3]] and "[unused4]" in tokens and "[unused2]" in tokens
    assert tokens.index("[unused4]") < tokens.index("[unused2]")  # the inner mention closes first


def test_more_entities_than_markers_is_refused_naming_the_field(dsdocre_model, redocred_documents):
    featurizer = DocREFeaturizer.from_model(dsdocre_model, max_marked_entities=5)
    with pytest.raises(DocREInputError, match="vertexSet") as error:
        featurizer(redocred_documents[0], index=0)
    assert redocred_documents[0]["title"] in str(error.value)


def test_ranked_markers_follow_the_candidate_pairs_as_the_released_code_does(encoder_dirs, relation_info, redocred_documents, tmp_path):
    torch.manual_seed(0)
    model = DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), method="dsdocre", marker_order="ranked", **SMALL)
    tokenizer = model.tokenizer
    document = dict(redocred_documents[3], labels=[], candidate_pairs=[[4, 0], [0, 2], [2, 4], [7, 4]])
    feature = DocREFeaturizer.from_model(model)(document)
    ids = feature["input_ids"]
    ranks = {4: 0, 0: 1, 2: 2, 7: 3}  # order of first appearance in the ranked pairs; pair j = [unused2j], [unused2j+1]
    for e, mentions in enumerate(document["vertexSet"]):
        if e in ranks:
            start_id = tokenizer.convert_tokens_to_ids(f"[unused{2 * ranks[e]}]")
            end_id = tokenizer.convert_tokens_to_ids(f"[unused{2 * ranks[e] + 1}]")
            assert sum(i == start_id for i in ids) == len(mentions) == sum(i == end_id for i in ids)
            assert all(ids[position] == start_id for position in feature["mention_index"][e])
    marker_ids = {tokenizer.convert_tokens_to_ids(f"[unused{i}]") for i in range(0, 85)}
    marked = sum(len(document["vertexSet"][e]) for e in ranks)
    assert sum(i in marker_ids for i in ids) == 2 * marked  # entities in no pair are not marked
    plain = DocREFeaturizer(tokenizer, entity_marker=None)(document, with_labels=False)
    unranked = [e for e in range(len(document["vertexSet"])) if e not in ranks]
    first_words = [plain["input_ids"][p] for e in unranked for p in plain["mention_index"][e]]
    assert [ids[p] for e in unranked for p in feature["mention_index"][e]] == first_words  # their first word instead
    # the default numbers by entity index; without candidate pairs the ranked scheme says what is missing
    assert DocREFeaturizer.from_model(model, marker_order="entity")(document)["input_ids"] != ids
    with pytest.raises(DocREInputError, match="candidate_pairs.*ranker"):
        DocREFeaturizer.from_model(model)(redocred_documents[3], index=3)
    with pytest.raises(ValueError, match="marker_order='ranked'.*entity_marker='indexed'"):
        DocREConfig(marker_order="ranked")
    model.save_pretrained(tmp_path / "ranked")
    assert DocREModel.from_pretrained(tmp_path / "ranked").config.marker_order == "ranked"


def test_dsdocre_trains_and_predicts_one_relation_per_pair(dsdocre_model, redocred_documents):
    model = dsdocre_model.train()
    features = DocREFeaturizer.from_model(model).featurize([redocred_documents[4], short_document(redocred_documents[5])])
    batch = DocREDataCollator.from_model(model)(features)
    output = model(**batch)
    output.loss.backward()
    assert model.head.relation_bilinear.weight.grad.abs().sum() > 0
    predicted = model.decode(output.logits.detach())
    assert (predicted.sum(-1) <= 1).all()  # one decision per pair: a relation or NA
    model.zero_grad()


# -- pre-training ---------------------------------------------------------------------------------------------------


def tiny_pretraining_model(**options):
    torch.manual_seed(0)
    config = DocREConfig(encoder={"model_type": "bert", "vocab_size": 50, "hidden_size": 8, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "intermediate_size": 16},
                         relations=["P1", "P2"], method="dsdocre", **{**SMALL, **options})
    return DocREForDenoisingPreTraining(config).double().eval()


def hand_inputs():
    """2 examples = 4 document rows (rows 0, 1 and their partners 2, 3), 5 entities each, 12 tokens."""
    return {
        "masked_mention_position": torch.tensor([[3, 5, -1], [2, -1, -1], [7, 8, 9], [4, -1, -1]]),
        "masked_mention_candidates": torch.tensor([[[0, 1, 2], [2, 3, 4], [0, 0, 0]], [[1, 0, 4], [0, 1, 2], [0, 1, 2]],
                                                   [[4, 3, 2], [1, 2, 3], [0, 2, 4]], [[2, 3, 1], [0, 1, 2], [0, 1, 2]]]),
        "masked_mention_labels": torch.tensor([[1, 0, 2], [2, 1, 1], [0, 2, 1], [-100, 0, 0]]),
        "cross_entity_query": torch.tensor([0, 3, 2, 4]),
        "cross_entity_candidates": torch.tensor([[1, 2, 3, 4], [0, 2, 1, 3], [4, 3, 2, 1], [1, 0, 3, 2]]),
        "cross_entity_labels": torch.tensor([2, -100, 0, 3]),
        "detection_pairs": torch.tensor([[[[0, 1], [1, 2], [3, 4]]], [[[2, 0], [4, 1], [1, 3]]],
                                         [[[1, 0], [2, 3], [4, 0]]], [[[0, 4], [3, 1], [2, 2]]]]),
        "detection_labels": torch.tensor([[0], [2], [-100], [1]]),
        "cross_detection_pairs": torch.tensor([[[[0, 0, 1], [1, 2, 3], [0, 4, 2]]], [[[1, 1, 0], [0, 3, 4], [1, 0, 2]]]]),
        "cross_detection_labels": torch.tensor([[1], [0]]),
        "alignment_query": torch.tensor([[0, 1], [2, 3], [4, 0], [1, 4]]),
        "alignment_candidates": torch.tensor([[[1, 2], [0, 3], [2, 4]], [[3, 0], [1, 1], [0, 4]],
                                              [[2, 1], [4, 3], [0, 1]], [[1, 0], [3, 2], [4, 4]]]),
        "alignment_labels": torch.tensor([1, 0, -100, 2]),
    }


def reference_losses(model, sequence, entities, inputs):
    """Loop-by-loop implementation of Eq. 1-4 and the code's per-side means."""
    heads = model.pretraining_heads
    rows = entities.shape[0]

    def relation(b, h, t):
        return heads.relation_bilinear(entities[b, h][None], entities[b, t][None])[0]

    def side_sum(items):  # items: (side, logits, label) -> sum over sides of the mean CE of valid rows
        total = torch.zeros((), dtype=torch.float64)
        for side in (0, 1):
            losses = [nn.functional.cross_entropy(lg[None], torch.tensor([lb])) for s, lg, lb in items if s == side and lb != -100]
            if losses:
                total = total + torch.stack(losses).mean()
        return total

    out = {}
    items = []
    for b in range(rows):
        for k in range(3):
            position = int(inputs["masked_mention_position"][b, k])
            if position < 0:
                continue
            mention = sequence[b, position]
            logits = torch.stack([heads.mention_bilinear(entities[b, int(c)][None], mention[None])[0, 0]
                                  for c in inputs["masked_mention_candidates"][b, k]])
            items.append((int(b >= rows // 2), logits, int(inputs["masked_mention_labels"][b, k])))
    out["mention_matching"] = side_sum(items)
    items = []
    for b in range(rows):
        partner = (b + rows // 2) % rows
        query = entities[b, int(inputs["cross_entity_query"][b])]
        logits = torch.stack([heads.mention_bilinear(entities[partner, int(c)][None], query[None])[0, 0]
                              for c in inputs["cross_entity_candidates"][b]])
        items.append((int(b >= rows // 2), logits, int(inputs["cross_entity_labels"][b])))
    out["cross_mention_matching"] = side_sum(items)
    items = []
    for b in range(rows):
        logits = torch.stack([heads.detection_score(relation(b, int(h), int(t)))[0] for h, t in inputs["detection_pairs"][b, 0]])
        items.append((int(b >= rows // 2), logits, int(inputs["detection_labels"][b, 0])))
    out["relation_detection"] = side_sum(items)
    items = []
    for b in range(rows // 2):
        logits = torch.stack([heads.detection_score(relation(b + int(s) * (rows // 2), int(h), int(t)))[0]
                              for s, h, t in inputs["cross_detection_pairs"][b, 0]])
        items.append((0, logits, int(inputs["cross_detection_labels"][b, 0])))
    out["cross_relation_detection"] = side_sum(items)
    items = []
    for b in range(rows):
        partner = (b + rows // 2) % rows
        query = relation(b, *map(int, inputs["alignment_query"][b]))
        distance = (lambda d: d.abs()) if model.config.alignment_distance == "abs" else (lambda d: d ** 2)
        logits = torch.stack([heads.alignment_score(distance(query - relation(partner, int(h), int(t))))[0]
                              for h, t in inputs["alignment_candidates"][b]])
        items.append((int(b >= rows // 2), logits, int(inputs["alignment_labels"][b])))
    out["relation_alignment"] = side_sum(items)
    return out


@pytest.mark.parametrize("distance", ["abs", "square"])
def test_pretraining_task_losses_equal_a_hand_computation(distance):
    model = tiny_pretraining_model(alignment_distance=distance, pretraining_task_weights={"relation_alignment": 0.5})
    torch.manual_seed(1)
    sequence = torch.randn(4, 12, 8, dtype=torch.float64)
    entities = torch.randn(4, 5, 8, dtype=torch.float64)
    inputs = hand_inputs()
    output = model.task_losses(sequence, entities, **inputs)
    expected = reference_losses(model, sequence, entities, inputs)
    for task, value in expected.items():
        torch.testing.assert_close(getattr(output, f"{task}_loss").double(), value, msg=task)
    total = sum(value * (0.5 if task == "relation_alignment" else 1.0) for task, value in expected.items())
    torch.testing.assert_close(output.loss.double(), total)


def test_a_task_with_every_row_ignored_gives_zero_and_finite_gradients():
    model = tiny_pretraining_model()
    sequence = torch.randn(4, 12, 8, dtype=torch.float64, requires_grad=True)
    entities = torch.randn(4, 5, 8, dtype=torch.float64, requires_grad=True)
    inputs = hand_inputs()
    for name in ("masked_mention_labels", "cross_entity_labels", "detection_labels", "cross_detection_labels", "alignment_labels"):
        inputs[name] = torch.full_like(inputs[name], -100)
    output = model.task_losses(sequence, entities, **inputs)
    assert output.loss == 0 and all(getattr(output, f"{t}_loss") == 0 for t in model.config.pretraining_tasks)
    output.loss.backward()
    assert torch.isfinite(entities.grad).all() and torch.isfinite(model.pretraining_heads.relation_bilinear.weight.grad).all()


def test_pretrained_encoder_loads_into_the_relation_extraction_model(tmp_path):
    pretraining = tiny_pretraining_model().float()
    pretraining.save_pretrained(tmp_path / "pretrained")
    reloaded = DocREForDenoisingPreTraining.from_pretrained(tmp_path / "pretrained")
    for key, value in pretraining.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key
    model, info = DocREModel.from_pretrained(tmp_path / "pretrained", output_loading_info=True)
    encoder = {k: v for k, v in pretraining.state_dict().items() if k.startswith("encoder.")}
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in encoder.items())
    assert not any(k.startswith("pretraining_heads") for k in state)
    assert {k.split(".")[0] for k in info["missing_keys"]} == {"head"}  # a fresh fine-tuning head


def test_ranker_scores_are_batch_independent(encoder_dirs, relation_info, redocred_documents):
    torch.manual_seed(0)
    ranker = DocREForDenoisingPreTraining.from_encoder(encoder_dirs["bert"], relations=list(relation_info), method="dsdocre",
                                                       pretraining_tasks=["relation_detection"], **SMALL).eval()
    assert ranker.pretraining_heads.mention_bilinear is None and ranker.pretraining_heads.alignment_score is None
    featurizer, collator = DocREFeaturizer.from_model(ranker), DocREDataCollator.from_model(ranker)
    documents = [redocred_documents[6], short_document(redocred_documents[7]), redocred_documents[8]]
    batch = collator(featurizer.featurize(documents, with_labels=False))
    keep = ("input_ids", "attention_mask", "mention_index", "pair_index")
    with torch.no_grad():
        together = ranker.score_pairs(**{k: batch[k] for k in keep})
        for b, document in enumerate(documents):
            single = collator(featurizer.featurize([document], with_labels=False))
            alone = ranker.score_pairs(**{k: single[k] for k in keep})[0]
            torch.testing.assert_close(together[b, : alone.shape[0]], alone, atol=1e-5, rtol=1e-4)
            assert torch.isinf(together[b, alone.shape[0]:]).all()


def test_the_pipeline_picks_candidate_pairs_with_a_ranker(encoder_dirs, relation_info, redocred_documents, tmp_path):
    from transformers import pipeline

    from hf_docre.denoising import load_pair_scores, select_candidate_pairs, write_pair_scores

    torch.manual_seed(0)
    ranker = DocREForDenoisingPreTraining.from_encoder(encoder_dirs["bert"], relations=list(relation_info), method="dsdocre",
                                                       pretraining_tasks=["relation_detection"], **SMALL).eval()
    documents = [redocred_documents[6], short_document(redocred_documents[7]), redocred_documents[8]]
    # in memory, batched or not, equal to the stored route (write_pair_scores -> select_candidate_pairs)
    stored = select_candidate_pairs(load_pair_scores(write_pair_scores(ranker, DocREFeaturizer.from_model(ranker).featurize(
        documents, with_labels=False), tmp_path / "scores")), [len(d["vertexSet"]) for d in documents])
    assert ranker.candidate_pairs(documents) == ranker.candidate_pairs(documents, batch_size=1) == stored
    assert [len(c) for c in stored] == [min(2 * len(d["vertexSet"]), 60) for d in documents]

    model = DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), method="dsdocre", **SMALL).eval()
    with torch.no_grad():
        model.head.classifier.bias[0] = -20.0  # NA never wins: every scored pair gets a relation
    ranker.save_pretrained(tmp_path / "ranker")
    pipe = pipeline("doc-relation-extraction", model=model)
    for document, candidates in zip(documents, stored):
        given_pairs = pipe({**document, "labels": [], "candidate_pairs": candidates})
        assert given_pairs  # (pairs whose entities share no window of the tiny encoder are not scored)
        assert {(r["head"]["index"], r["tail"]["index"]) for r in given_pairs} <= set(map(tuple, candidates))
        for given in (ranker, str(tmp_path / "ranker")):
            assert pipe(document, ranker=given) == given_pairs
    assert len(pipe(documents[0])) > len(pipe(documents[0], ranker=ranker))  # without the ranker: every pair
    top5 = ranker.candidate_pairs(documents[:1], per_entity=1, cap=5)[0]
    assert top5 == stored[0][:5]
    relations = pipe(documents[0], ranker=ranker, candidates_per_entity=1, candidates_cap=5)
    assert relations and {(r["head"]["index"], r["tail"]["index"]) for r in relations} <= set(map(tuple, top5))


def test_the_pretrained_relation_bilinear_can_start_the_fine_tuning_head(tmp_path):
    pretraining = tiny_pretraining_model(emb_size=6).float()
    pretraining.save_pretrained(tmp_path / "pretrained")
    weight = pretraining.pretraining_heads.relation_bilinear.weight
    fresh = DocREModel.from_pretrained(tmp_path / "pretrained")
    assert not torch.equal(fresh.head.relation_bilinear.weight, weight)  # the released code's default: a fresh head
    transferred = DocREModel.from_pretrained(tmp_path / "pretrained", transfer_relation_bilinear=True)
    assert torch.equal(transferred.head.relation_bilinear.weight, weight)
    assert torch.equal(transferred.head.relation_bilinear.bias, pretraining.pretraining_heads.relation_bilinear.bias)
