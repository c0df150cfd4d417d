import copy
import re
import warnings

import pytest

from hf_docre import DocREDataCollator, DocREFeaturizer, DocREInputError
from hf_docre.modeling_docre import load_tokenizer
from hf_docre.processing_docre import all_ordered_pairs, feature_pairs, num_feature_pairs, pair_position


@pytest.fixture(scope="module")
def label2id(relation_info):
    return {"NA": 0, **{code: i + 1 for i, code in enumerate(relation_info)}}


@pytest.fixture(scope="module", params=["bert", "roberta"])
def featurizer(request, encoder_dirs, label2id):
    tokenizer = load_tokenizer(encoder_dirs[request.param])
    return DocREFeaturizer(tokenizer, label2id=label2id)


def marker_token_ids(tokenizer):
    # The first token of the marker as a pre-split word (RoBERTa-style: with its prefix space).
    return {tokenizer(["*"], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]}


def test_real_documents_every_mention_on_its_marker(featurizer, redocred_documents):
    documents = redocred_documents[:8]
    features = featurizer.featurize(documents)
    markers = marker_token_ids(featurizer.tokenizer)
    tokenizer = featurizer.tokenizer
    for document, feature in zip(documents, features):
        ids = feature["input_ids"]
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        assert len(feature["mention_index"]) == len(document["vertexSet"])
        for mentions, positions in zip(document["vertexSet"], feature["mention_index"]):
            assert len(positions) == len(mentions)
            for mention, position in zip(mentions, positions):
                assert ids[position] in markers
                # The tokens after the marker spell the mention's first word.
                first_word = document["sents"][mention["sent_id"]][mention["pos"][0]]
                following = tokenizer.decode(ids[position : position + 10]).replace(" ", "").lower()
                assert following.startswith("*")
                following = following[1:]
                assert following.startswith(first_word.replace(" ", "").lower()[:3]) or following.startswith(("[unk]", "<unk>"))


def test_no_truncation_of_long_documents(featurizer, redocred_documents):
    longest = max(redocred_documents[:50], key=lambda d: sum(len(s) for s in d["sents"]))
    feature = featurizer(longest)
    words = sum(len(s) for s in longest["sents"])
    assert len(feature["input_ids"]) > words  # every word kept, plus markers and specials


def test_pairs_and_labels(featurizer, redocred_documents, label2id):
    document = redocred_documents[0]
    feature = featurizer(document)
    num_entities = len(document["vertexSet"])
    assert "pair_index" not in feature  # all ordered pairs are implicit
    pairs = feature_pairs(feature).tolist()
    assert len(pairs) == num_entities * (num_entities - 1)
    assert pairs[:3] == [[0, 1], [0, 2], [0, 3]]
    assert all(h != t for h, t in pairs)
    expected = {(pair_position(l["h"], l["t"], num_entities), label2id[l["r"]]) for l in document["labels"]}
    assert {tuple(x) for x in feature["labels"]} == expected
    for position, relation in feature["labels"]:
        h, t = pairs[position]
        assert any(l["h"] == h and l["t"] == t and label2id[l["r"]] == relation for l in document["labels"])


def test_pair_position_matches_all_ordered_pairs():
    for n in range(1, 6):
        pairs = all_ordered_pairs(n).tolist()
        for i, (h, t) in enumerate(pairs):
            assert pair_position(h, t, n) == i
        if n > 1:  # the array form gives every position at once
            ordered = all_ordered_pairs(n)
            assert pair_position(ordered[:, 0], ordered[:, 1], n).tolist() == list(range(len(ordered)))


def test_marker_words_are_shared_by_mentions_with_the_same_start(featurizer):
    document = {
        "title": "shared start",
        "sents": [["Alan", "Turing", "was", "born", "in", "London", "."]],
        "vertexSet": [
            [{"name": "Alan Turing", "pos": [0, 2], "sent_id": 0, "type": "PER"}],
            [{"name": "Alan", "pos": [0, 1], "sent_id": 0, "type": "PER"}],
            [{"name": "London", "pos": [5, 6], "sent_id": 0, "type": "LOC"}],
        ],
    }
    feature = featurizer(document)
    assert feature["mention_index"][0] == feature["mention_index"][1]
    assert "labels" not in feature


def test_no_markers_points_at_first_subtoken(encoder_dirs, label2id):
    tokenizer = load_tokenizer(encoder_dirs["bert"])
    featurizer = DocREFeaturizer(tokenizer, label2id=label2id, entity_marker=None)
    document = {
        "title": "t",
        "sents": [["the", "city", "of", "london"]],
        "vertexSet": [[{"name": "city", "pos": [1, 2], "sent_id": 0}], [{"name": "london", "pos": [3, 4], "sent_id": 0}]],
    }
    feature = featurizer(document)
    ids = feature["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids[feature["mention_index"][0][0]]) == tokenizer.tokenize("city")[0]
    assert tokenizer.convert_ids_to_tokens(ids[feature["mention_index"][1][0]]) == tokenizer.tokenize("london")[0]
    assert feature["mention_index"][1][0] == len(tokenizer.tokenize("the city of")) + 1


def test_single_entity_document_has_no_pairs(featurizer):
    document = {"title": "alone", "sents": [["Paris", "is", "big", "."]], "vertexSet": [[{"name": "Paris", "pos": [0, 1], "sent_id": 0}]], "labels": []}
    feature = featurizer(document)
    assert len(feature_pairs(feature)) == 0 and feature["labels"] == []


def _bad(document, mutate):
    document = copy.deepcopy(document)
    mutate(document)
    return document


BAD_INPUTS = [
    ("mention outside its sentence", lambda d: d["vertexSet"][2][0].__setitem__("pos", [0, 999]), "vertexSet[2][0].pos"),
    ("empty mention span", lambda d: d["vertexSet"][1][0].__setitem__("pos", [3, 3]), "vertexSet[1][0].pos"),
    ("sentence id out of range", lambda d: d["vertexSet"][0][0].__setitem__("sent_id", 99), "vertexSet[0][0].sent_id"),
    ("entity without mentions", lambda d: d["vertexSet"].__setitem__(3, []), "vertexSet[3]"),
    ("label pointing at a missing entity", lambda d: d["labels"][0].__setitem__("t", 500), "labels[0].t"),
    ("label with head == tail", lambda d: d["labels"][1].__setitem__("t", d["labels"][1]["h"]), "labels[1]"),
    ("unknown relation", lambda d: d["labels"][0].__setitem__("r", "P99999"), "labels[0].r"),
    ("no sentences", lambda d: d.__setitem__("sents", []), "sents"),
]


@pytest.mark.parametrize("what, mutate, field", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_names_document_and_field(featurizer, redocred_documents, what, mutate, field):
    document = _bad(redocred_documents[0], mutate)
    with pytest.raises(DocREInputError) as info:
        featurizer(document, index=7)
    error = info.value
    assert error.field == field and error.index == 7 and error.title == document["title"]
    message = str(error)
    assert repr(document["title"]) in message and field in message and "index 7" in message


def test_featurize_keeps_what_was_processed(featurizer, redocred_documents):
    documents = copy.deepcopy(redocred_documents[:5])
    documents[3]["vertexSet"][0] = []
    with pytest.raises(DocREInputError) as info:
        featurizer.featurize(documents)
    assert info.value.index == 3 and len(info.value.processed) == 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = featurizer.featurize(documents, errors="skip")
    assert len(kept) == 4
    assert any("Skipped 1 of 5" in str(w.message) and "vertexSet[0]" in str(w.message) for w in caught)
    assert kept[3]["input_ids"] == featurizer(documents[4])["input_ids"]


def test_collator_pads_and_expands_labels(featurizer, redocred_documents, label2id):
    documents = redocred_documents[:3]
    features = featurizer.featurize(documents)
    collator = DocREDataCollator(featurizer.tokenizer.pad_token_id, num_relations=len(label2id))
    batch = collator(features)
    batch_size = len(features)
    length = max(len(f["input_ids"]) for f in features)
    num_pairs = max(num_feature_pairs(f) for f in features)
    assert batch["input_ids"].shape == (batch_size, length)
    assert batch["labels"].shape == (batch_size, num_pairs, len(label2id))
    for b, feature in enumerate(features):
        n = len(feature["input_ids"])
        assert batch["attention_mask"][b].sum() == n
        assert (batch["input_ids"][b, n:] == featurizer.tokenizer.pad_token_id).all()
        real = num_feature_pairs(feature)
        assert (batch["pair_index"][b, real:] == -1).all()
        assert (batch["labels"][b, real:] == -100).all()
        labels = batch["labels"][b, :real]
        assert ((labels[:, 0] == 1) == (labels[:, 1:].sum(-1) == 0)).all()  # NA exactly where no relation
        assert int(labels[:, 1:].sum()) == len(feature["labels"])
        for e, mentions in enumerate(feature["mention_index"]):
            assert batch["mention_index"][b, e, : len(mentions)].tolist() == mentions
            assert (batch["mention_index"][b, e, len(mentions) :] == -1).all()
    # Without labels, none are produced.
    unlabeled = [{k: v for k, v in f.items() if k != "labels"} for f in features]
    assert "labels" not in collator(unlabeled)


def test_map_batch_on_a_datasets_column(featurizer, redocred_documents):
    from datasets import Dataset

    documents = redocred_documents[:4]
    dataset = Dataset.from_list(documents)  # nested lists of dicts come back as dicts of lists
    mapped = dataset.map(featurizer.map_batch, batched=True, batch_size=3, remove_columns=dataset.column_names)
    expected = featurizer.featurize(documents)
    assert len(mapped) == len(expected)
    for row, feature in zip(mapped, expected):
        assert row == feature


def test_word_cache_equals_one_tokenizer_call_per_document(featurizer, redocred_documents):
    """The cached word pieces give exactly what one tokenizer call per document gives."""
    documents = copy.deepcopy(redocred_documents[:60])
    # Words a tokenizer may drop or split oddly: a lone control character, accents, CJK, an empty string.
    documents[0]["sents"][0][1:1] = ["\u0007", "Café", "東京", ""]
    for mention in (m for ms in documents[0]["vertexSet"] for m in ms if m["sent_id"] == 0):
        mention["pos"] = [p + 4 if p >= 1 else p for p in mention["pos"]]
    for marker in ("*", None):
        cached = DocREFeaturizer(featurizer.tokenizer, featurizer.label2id, entity_marker=marker)
        direct = DocREFeaturizer(featurizer.tokenizer, featurizer.label2id, entity_marker=marker, cache_words=False)
        assert cached.featurize(documents) == direct.featurize(documents)
        # One by one (the pipeline's path) and a second pass from a warm cache agree too.
        assert [cached(d) for d in documents[:5]] == direct.featurize(documents[:5])


def test_featurizer_pickles_without_its_cache(featurizer, redocred_documents):
    from datasets.fingerprint import Hasher

    fresh = DocREFeaturizer(featurizer.tokenizer, featurizer.label2id)
    before = Hasher.hash(fresh.map_batch)
    fresh.featurize(redocred_documents[:3])
    assert fresh._pieces  # the cache filled...
    assert Hasher.hash(fresh.map_batch) == before  # ...without changing the datasets fingerprint


def _with_candidates(document):
    document = copy.deepcopy(document)
    labelled = sorted({(label["h"], label["t"]) for label in document["labels"]})
    document["candidate_pairs"] = [list(pair) for pair in labelled] + [[1, 0]] * ((1, 0) not in labelled)
    return document


def test_candidate_pairs_limit_the_scored_pairs(featurizer, redocred_documents, label2id):
    document = _with_candidates(redocred_documents[0])
    feature = featurizer(document)
    assert feature["pair_index"] == document["candidate_pairs"]
    candidates = [tuple(pair) for pair in document["candidate_pairs"]]
    expected = {(candidates.index((l["h"], l["t"])), label2id[l["r"]]) for l in document["labels"]}
    assert {tuple(x) for x in feature["labels"]} == expected
    # In a batch with an all-pairs document, each keeps its own pairs.
    plain = featurizer(redocred_documents[1])
    batch = DocREDataCollator(featurizer.tokenizer.pad_token_id, len(label2id))([feature, plain])
    assert batch["pair_index"][0, : len(candidates)].tolist() == [list(p) for p in candidates]
    assert (batch["pair_index"][0, len(candidates) :] == -1).all()
    assert batch["pair_index"][1].tolist() == all_ordered_pairs(len(redocred_documents[1]["vertexSet"])).tolist()
    assert int(batch["labels"][0, : len(candidates), 1:].sum()) == len(expected)


@pytest.mark.parametrize("pair, field", [([0, 0], "candidate_pairs[0]"), ([0, 999], "candidate_pairs[0]")])
def test_bad_candidate_pairs_are_named(featurizer, redocred_documents, pair, field):
    document = _with_candidates(redocred_documents[0])
    document["candidate_pairs"][0] = pair
    with pytest.raises(DocREInputError, match=re.escape(field)):
        featurizer(document, index=0)


def test_label_outside_the_candidate_pairs_is_named(featurizer, redocred_documents):
    document = _with_candidates(redocred_documents[0])
    first = document["labels"][0]
    document["candidate_pairs"].remove([first["h"], first["t"]])
    with pytest.raises(DocREInputError, match=r"labels\[0\].*not in the document's candidate_pairs"):
        featurizer(document, index=0)


def test_map_batch_mixes_candidate_and_all_pairs_documents(featurizer, redocred_documents):
    from datasets import Dataset

    documents = [_with_candidates(redocred_documents[0]), {**redocred_documents[1], "candidate_pairs": None}]
    mapped = Dataset.from_list(documents).map(featurizer.map_batch, batched=True, remove_columns=list(documents[0]))
    assert mapped[0]["pair_index"] == documents[0]["candidate_pairs"]
    assert mapped[1]["pair_index"] is None
    assert feature_pairs(mapped[1]).tolist() == all_ordered_pairs(len(redocred_documents[1]["vertexSet"])).tolist()


@pytest.mark.parametrize("marker", ["*", None])
def test_token_word_map_gives_each_word_its_own_pieces(encoder_dirs, redocred_documents, marker):
    tokenizer = load_tokenizer(encoder_dirs["roberta"])
    featurizer = DocREFeaturizer(tokenizer, entity_marker=marker)
    for document in redocred_documents[:10]:
        feature = featurizer(document, with_labels=False, with_word_map=True)
        words = [w for sentence in document["sents"] for w in sentence]
        pieces = {}
        for token, word in zip(feature["input_ids"], feature["token_word"]):
            if word >= 0:
                pieces.setdefault(word, []).append(token)
        assert [pieces.get(i, []) for i in range(len(words))] == [
            tokenizer([w], is_split_into_words=True, add_special_tokens=False)["input_ids"] for w in words
        ]
        assert feature["token_word"][0] == -1 and feature["token_word"][-1] == -1  # special tokens


def test_a_small_word_cache_gives_the_same_features(featurizer, redocred_documents, label2id):
    # Past max_cached_words the cache starts over; it used to drop words a document still needed (KeyError).
    small = DocREFeaturizer(featurizer.tokenizer, label2id=label2id, max_cached_words=300)
    documents = redocred_documents[:8]
    expected = DocREFeaturizer(featurizer.tokenizer, label2id=label2id).featurize(documents)
    assert small.featurize(documents) == expected
    assert [small(d) for d in documents] == expected
    assert len(small._pieces) <= max(300, max(len({w for s in d["sents"] for w in s}) + 1 for d in documents))
