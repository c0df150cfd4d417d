"""Text input as people have it: abbreviations, decimals, quotes, own segmentation, NER-style entity spans; and an
output a user can act on (spans, sentences, threshold/top_k on every head, context words, metric/submission)."""

import json

import evaluate
import pytest
import torch
from conftest import SMALL_HEAD
from transformers import pipeline

from hf_docre import DocREModel, SpanAlignmentError, group_entity_spans, normalize_entity_name, text_to_document, to_docred_predictions
from hf_docre.data import write_submission
from hf_docre.metrics import METRIC_PATH, score_docred


def spans_of(text, *names):
    """[start, end] of the first occurrence of each name (after the previous one)."""
    result, cursor = [], 0
    for name in names:
        start = text.index(name, cursor)
        result.append([start, start + len(name)])
        cursor = start + len(name)
    return result


def sentences_of(document):
    return [" ".join(sentence) for sentence in document["sents"]]


@pytest.mark.parametrize(
    "text, names, expected_sentences",
    [
        ("Dr. Jane Doe joined Acme Inc. in 2019. She left in 2021.", ["Dr. Jane Doe", "Acme Inc."], 2),
        ("J. K. Rowling was born in Yate. Her books sold well.", ["J. K. Rowling", "Yate"], 2),
        ("The U.S. Army moved to Texas. It stayed.", ["U.S. Army", "Texas"], 2),
        ("He moved to the U.S. The company followed him.", ["U.S."], 2),  # an abbreviation that ends a sentence
        ("Apple earned $6.9 billion in 2020, up 3.5% from 1,200 units.", ["Apple", "$6.9 billion"], 1),
        ('"I love Paris," said Marie Curie. "It is home." Then she left.', ["Paris", "Marie Curie"], 3),
        ("See https://example.org/a.b for Acme Corp. data. Mr. Smith wrote it.", ["Acme Corp.", "Mr. Smith"], 2),
        ("Rowling's publisher, Bloomsbury, didn't agree.", ["Rowling", "Bloomsbury"], 1),
    ],
)
def test_real_text_is_segmented_right(text, names, expected_sentences):
    entities = [{"mentions": [span], "type": "X"} for span in spans_of(text, *names)]
    document = text_to_document(text, entities)
    assert len(document["sents"]) == expected_sentences, sentences_of(document)
    for entity, name, _ in zip(document["vertexSet"], names, spans_of(text, *names)):
        mention = entity[0]
        assert mention["name"] == name
        words = document["sents"][mention["sent_id"]][mention["pos"][0] : mention["pos"][1]]
        assert "".join(words) == name.replace(" ", "")
    # every word's offsets point at the word
    for sentence, offsets in zip(document["sents"], document["offsets"]["words"]):
        assert [text[s:e] for s, e in offsets] == sentence


def test_decimals_urls_and_quotes_are_words():
    document = text_to_document("Visit https://example.org/a.b. It cost $6.9 billion at 10:30 a.m.", [])
    words = [w for sentence in document["sents"] for w in sentence]
    assert "https://example.org/a.b" in words and "6.9" in words and "10:30" in words and "a.m." in words
    assert len(document["sents"]) == 2


def test_a_sentence_never_ends_inside_a_mention():
    text = "He met the Dr. Who Fan Club. Then he left."
    document = text_to_document(text, [{"mentions": [spans_of(text, "the Dr. Who Fan Club")[0]], "type": "ORG"}])
    assert document["vertexSet"][0][0]["name"] == "the Dr. Who Fan Club"
    assert len(document["sents"]) == 2


def test_own_sentences_and_words():
    text = "Alice works at Acme. Bob works there too."
    entities = [{"mentions": [spans_of(text, "Alice")[0]], "type": "PER"}, {"mentions": [spans_of(text, "Acme")[0]], "type": "ORG"}]
    as_strings = text_to_document(text, entities, sentences=["Alice works at Acme.", "Bob works there too."])
    as_offsets = text_to_document(text, entities, sentences=[[0, 20], [21, 41]])
    assert as_strings["sents"] == as_offsets["sents"] == [["Alice", "works", "at", "Acme", "."], ["Bob", "works", "there", "too", "."]]
    one_sentence = text_to_document(text, entities, sentences=[text])
    assert len(one_sentence["sents"]) == 1
    words = text_to_document(text, entities[:1], words=["Alice", "works", "at", "Acme.", "Bob", "works", "there", "too."],
                             sentences=[[0, 20], [21, 41]])
    assert words["sents"][0] == ["Alice", "works", "at", "Acme."]  # given words are kept as they are
    with pytest.raises(SpanAlignmentError, match=r"\('Acme'\) does not align.*'Acme\.'"):
        text_to_document(text, entities, words=["Alice", "works", "at", "Acme."], sentences=[[0, 20]])
    splitter = text_to_document(text, entities, sentence_splitter=lambda t: [t])
    assert len(splitter["sents"]) == 1
    with pytest.raises(SpanAlignmentError, match="not found"):
        text_to_document(text, entities, sentences=["Nobody works here."])
    with pytest.raises(SpanAlignmentError, match="crosses a boundary of the given sentences"):
        text_to_document(text, [{"mentions": [[15, 24]], "type": "X"}], sentences=[[0, 20], [21, 41]],
                         words=[[0, 5], [6, 11], [12, 14], [15, 19], [19, 20], [21, 24], [25, 30], [31, 36], [37, 40], [40, 41]])


TEXT = "Barack Obama was born in Hawaii. Obama later moved to Chicago, Illinois. The U.S. president lived in Chicago."


def test_ner_spans_are_grouped_into_entities():
    obama, hawaii, obama2, chicago, illinois, us, chicago2 = spans_of(TEXT, "Barack Obama", "Hawaii", "Obama", "Chicago", "Illinois", "U.S.", "Chicago")
    spans = [
        {"start": chicago[0], "end": chicago[1], "label": "LOC"},
        {"start": obama[0], "end": obama[1], "label": "PER", "entity_id": "obama"},
        {"start": obama2[0], "end": obama2[1], "label": "PER", "entity_id": "obama"},
        {"start": hawaii[0], "end": hawaii[1], "label": "LOC"},
        {"start": chicago2[0], "end": chicago2[1], "label": "LOC"},
        {"start": chicago2[0], "end": chicago2[1], "label": "LOC"},  # a duplicate counts once
    ]
    entities = group_entity_spans(TEXT, spans)
    assert [e["name"] for e in entities] == ["Barack Obama", "Hawaii", "Chicago"]
    assert entities[0]["mentions"] == [obama, obama2] and entities[2]["mentions"] == [chicago, chicago2]

    # transformers token-classification output (entity_group, word, leading space in the span), tuples, spaCy spans
    class SpacySpan:
        def __init__(self, start, end, label):
            self.start_char, self.end_char, self.label_ = start, end, label

    hf_style = [{"entity_group": "LOC", "word": "Hawaii", "start": hawaii[0] - 1, "end": hawaii[1], "score": 0.99},
                {"entity_group": "LOC", "word": "Illinois", "start": illinois[0], "end": illinois[1], "score": 0.98}]
    assert [e["mentions"] for e in group_entity_spans(TEXT, hf_style)] == [[hawaii], [illinois]]
    assert group_entity_spans(TEXT, [tuple(hawaii) + ("LOC",), tuple(chicago2) + ("LOC",), tuple(chicago) + ("LOC",)])[1]["mentions"] == [chicago, chicago2]
    assert group_entity_spans(TEXT, [SpacySpan(*us, "GPE")])[0] == {"mentions": [us], "type": "GPE", "name": "U.S."}
    # without ids, the same name with a different label is the same entity (recognisers disagree), unless labels
    # must agree; the type is the majority label, a tie goes to the higher score
    disagreeing = [{"start": chicago[0], "end": chicago[1], "label": "LOC", "score": 0.6},
                   {"start": chicago2[0], "end": chicago2[1], "label": "ORG", "score": 0.9}]
    assert [(e["mentions"], e["type"]) for e in group_entity_spans(TEXT, disagreeing)] == [([chicago, chicago2], "ORG")]
    assert len(group_entity_spans(TEXT, disagreeing, across_labels=False)) == 2


def test_name_normalisation_rule():
    assert normalize_entity_name("The U.S.") == normalize_entity_name("US") == "us"
    assert normalize_entity_name("Obama's") == normalize_entity_name("OBAMA") == "obama"
    assert normalize_entity_name("  New   York ") == "new york"


def test_bad_entity_input_is_named():
    with pytest.raises(SpanAlignmentError, match="mix"):
        text_to_document(TEXT, [{"mentions": [[0, 12]]}, {"start": 25, "end": 31, "label": "LOC"}])
    with pytest.raises(SpanAlignmentError, match=r"entities\[0\] has no `start`/`end`"):
        text_to_document(TEXT, [{"label": "LOC"}])
    with pytest.raises(SpanAlignmentError, match=r"entities\[1\] = \[500, 510\)"):
        text_to_document(TEXT, [{"start": 0, "end": 12, "label": "PER"}, {"start": 500, "end": 510, "label": "X"}])


# -- through the pipeline -------------------------------------------------------------------------------------------


def _model(encoder_dirs, relation_info, method):
    torch.manual_seed(0)
    head = {} if method in ("bert-baseline", "two-step") else SMALL_HEAD
    model = DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), relation_names=relation_info,
                                    method=method, **head)
    if method == "two-step":
        with torch.no_grad():
            model.head.existence_bilinear.bias.fill_(3.0)  # step 1 accepts pairs, so step 2 names relations
    return model.eval()


@pytest.fixture(scope="module")
def atlop_pipe(encoder_dirs, relation_info):
    return pipeline("doc-relation-extraction", model=_model(encoder_dirs, relation_info, "atlop"))


def test_plain_string_and_unknown_options_are_clear_errors(atlop_pipe):
    from hf_docre.entities_docre import installed_spacy_pipelines

    if not installed_spacy_pipelines():  # a plain string runs the default recogniser; without one, what to do
        with pytest.raises(ImportError, match=r"(?s)hf_docre\[text\].*en_core_web_sm.*offline.*spacy:<.*gliner:<.*\"rules\""):
            atlop_pipe("Barack Obama was born in Hawaii.")
    with pytest.raises(TypeError, match="unknown option.*'top_n'.*top_k"):
        atlop_pipe({"text": TEXT, "entities": []}, top_n=3)
    with pytest.raises(TypeError, match="'treshold'"):
        pipeline("doc-relation-extraction", model=atlop_pipe.model, treshold=0.3)
    with pytest.raises(ValueError, match="cannot read an input"):
        atlop_pipe({"sentences": ["x"]})


def test_ner_spans_through_the_pipeline_point_at_the_text(atlop_pipe):
    spans = [{"start": s, "end": e, "label": label} for (s, e), label in zip(
        spans_of(TEXT, "Barack Obama", "Hawaii", "Obama", "Chicago", "Illinois", "U.S.", "Chicago"),
        ["PER", "LOC", "PER", "LOC", "LOC", "LOC", "LOC"])]
    relations = atlop_pipe({"text": TEXT, "entities": spans}, threshold=0.0, max_relations_per_pair=1)
    assert relations
    for item in relations:
        for side in ("head", "tail"):
            for mention in item[side]["mentions"]:
                assert TEXT[mention["start"] : mention["end"]] == mention["name"]
        for _sent_id, (start, end) in zip(item["sentences"], item["sentence_spans"]):
            assert TEXT[start:end] in TEXT and TEXT[start:end].endswith(".")
    chicago = [item for item in relations if item["head"]["name"] == "Chicago"][0]["head"]
    assert [TEXT[m["start"] : m["end"]] for m in chicago["mentions"]] == ["Chicago", "Chicago"]
    assert [m["sent_id"] for m in chicago["mentions"]] == [1, 2]


@pytest.mark.parametrize("method", ["atlop", "bert-baseline", "two-step", "kd-docre"])
def test_threshold_and_top_k_on_every_head(encoder_dirs, relation_info, redocred_documents, method):
    pipe = pipeline("doc-relation-extraction", model=_model(encoder_dirs, relation_info, method))
    document = redocred_documents[1]
    everything = pipe(document, threshold=0.0, max_relations_per_pair=0)
    scores = [x["score"] for x in everything]
    assert scores == sorted(scores, reverse=True) and len(everything) > 10
    cut = sorted(scores)[len(scores) // 2]
    above = pipe(document, threshold=cut, max_relations_per_pair=0)
    assert above and all(x["score"] > cut for x in above)
    assert len(above) == sum(s > cut for s in scores)
    top = pipe(document, threshold=0.0, max_relations_per_pair=0, top_k=3)
    assert [(x["head"]["index"], x["tail"]["index"], x["relation_id"]) for x in top] == [
        (x["head"]["index"], x["tail"]["index"], x["relation_id"]) for x in everything[:3]]
    per_pair = pipe(document, threshold=0.0, max_relations_per_pair=1)
    pairs = [(x["head"]["index"], x["tail"]["index"]) for x in per_pair]
    assert len(pairs) == len(set(pairs))
    default = pipe(document)
    if method in ("atlop", "kd-docre"):  # the documented score: the model's own decision is score > 0.5
        same = pipe(document, threshold=0.5)
        assert [x["relation_id"] for x in same] == [x["relation_id"] for x in default]
    if method == "bert-baseline":  # threshold is the global threshold
        pipe.model.config.global_threshold = cut
        assert len(pipe(document)) == len(pipe(document, threshold=cut))
        pipe.model.config.global_threshold = 0.5
    with pytest.raises(ValueError, match="between 0 and 1"):
        pipe(document, threshold=1.5)


def test_outputs_feed_the_metric_and_the_submission(atlop_pipe, redocred_documents, tmp_path):
    documents = redocred_documents[:4]
    outputs = atlop_pipe(documents, batch_size=2)
    predictions = to_docred_predictions(outputs)
    assert len(predictions) == 4 and sum(map(len, predictions)) == sum(map(len, outputs))
    expected = score_docred(predictions, documents)
    metric = evaluate.load(METRIC_PATH)
    result = metric.compute(predictions=predictions, references=documents)
    assert result["f1"] == pytest.approx(expected["f1"]) and result["num_predictions"] == expected["num_predictions"]
    assert result["evidence_f1"] is None  # the model predicts no evidence
    json_path, _ = write_submission(predictions, tmp_path, documents=documents)
    records = json.loads(open(json_path).read())
    assert len(records) == sum(map(len, outputs)) and records[0]["title"] == documents[0]["title"]
    assert to_docred_predictions(outputs[0]) == predictions[:1]  # one document's output


def test_context_is_document_words(atlop_pipe, redocred_documents):
    document = redocred_documents[2]
    relations = atlop_pipe(document, threshold=0.0, top_k=5, return_context=True, context_words=1000)
    words = [w for sentence in document["sents"] for w in sentence]
    for item in relations:
        context = item["context"]
        assert context and sum(c["weight"] for c in context) == pytest.approx(1.0, abs=1e-4)
        for c in context:
            assert document["sents"][c["sent_id"]][c["pos"]] == c["word"]
            assert c["word"] not in ("[CLS]", "[SEP]") and not c["word"].startswith("##")
        marker_weight = sum(c["weight"] for c in context if c["word"] == "*")
        assert marker_weight == pytest.approx(sum(c["weight"] for c in context if c["word"] == "*" and "*" in words))
    text_relations = atlop_pipe({"text": TEXT, "entities": [{"start": 0, "end": 12, "label": "PER"}, {"start": 25, "end": 31, "label": "LOC"}]},
                                threshold=0.0, return_context=True, context_words=3)
    for item in text_relations:
        assert len(item["context"]) == 3
        for c in item["context"]:
            assert TEXT[c["start"] : c["end"]] == c["word"]


def test_a_bad_document_in_a_list_is_skipped_on_request(atlop_pipe, redocred_documents):
    good = redocred_documents[:3]
    broken = {**redocred_documents[3], "vertexSet": [[{"name": "x", "pos": [0, 1], "sent_id": 99}]] + redocred_documents[3]["vertexSet"]}
    documents = [good[0], broken, good[1], {"text": TEXT, "entities": [{"start": 500, "end": 510, "label": "X"}]}, good[2]]
    with pytest.raises(ValueError, match=r"vertexSet\[0\]\[0\]"):
        atlop_pipe(documents, batch_size=2)
    expected = [atlop_pipe(d) for d in good]
    for batch_size in (None, 2):
        with pytest.warns(UserWarning, match="skipped a document") as caught:
            results = atlop_pipe(documents, errors="skip", **({"batch_size": batch_size} if batch_size else {}))
        assert results[1] is None and results[3] is None
        assert any("sent_id 99" in str(w.message) and redocred_documents[3]["title"] in str(w.message) for w in caught)
        assert any(r"entities[0] = [500, 510)" in str(w.message) for w in caught)
        for result, single in zip([results[0], results[2], results[4]], expected):
            assert [(x["head"]["index"], x["tail"]["index"], x["relation_id"]) for x in result] == [
                (x["head"]["index"], x["tail"]["index"], x["relation_id"]) for x in single]
    with pytest.warns(UserWarning):
        assert atlop_pipe(broken, errors="skip") is None
