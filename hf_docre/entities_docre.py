"""Raw text -> entity spans: pluggable recognisers and the table that maps their labels onto DocRED's entity types.

Loaded through ``trust_remote_code`` by the pipeline: flat sibling, standard library only (spaCy and transformers
are used only when you pass one of their objects).

A recogniser is any of:

- a spaCy `Language` (`spacy.load("en_core_web_sm")`): its `doc.ents`;
- a transformers token-classification pipeline (`pipeline("token-classification", model=...)`, any
  `aggregation_strategy`; B-/I- tags are merged). It is run sentence by sentence, so no text is truncated;
- any callable `text -> spans`, the spans in any form `text_to_document` accepts (`{start, end, label}` dicts,
  `(start, end, label)` tuples, spaCy `Span`s, transformers' `entity_group` dicts);
- `"rules"`: [`RuleBasedRecognizer`], dependency-free and weak (see its docstring; measured in
  `benchmarks/bench_text_front_end.py`);
- `"spacy:<package or folder>"`: that spaCy pipeline;
- `"gliner:<folder or Hub id>"`, or a loaded `gliner.GLiNER`: [`GLiNERRecognizer`], DocRED's six types as labels;
- `None`: the default, the best installed spaCy English pipeline with an entity recogniser
  (`installed_spacy_pipelines`: `en_core_web_sm` first, and any package registering one, whatever its
  distribution name). With none installed, the error says what to install, online and offline, or pass instead.

Labels are mapped with [`ENTITY_LABEL_MAP`] (spaCy/OntoNotes, CoNLL, GLiNER-style lower-case names -> PER, ORG,
LOC, TIME, NUM, MISC); pass `label_map` to add or override entries, and map a label to None to drop its spans.
A label that is neither in the table nor mapped is kept as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from .text_docre import sentence_spans

DOCRED_ENTITY_TYPES = ("PER", "ORG", "LOC", "TIME", "NUM", "MISC")

# Keys are upper-case, without a B-/I-/E-/S- prefix.
ENTITY_LABEL_MAP: dict[str, str | None] = {
    # DocRED's own types
    **{t: t for t in DOCRED_ENTITY_TYPES},
    # spaCy / OntoNotes 5
    "PERSON": "PER", "NORP": "MISC", "FAC": "LOC", "GPE": "LOC", "PRODUCT": "MISC", "EVENT": "MISC",
    "WORK_OF_ART": "MISC", "LAW": "MISC", "LANGUAGE": "MISC", "DATE": "TIME", "PERCENT": "NUM", "MONEY": "NUM",
    "QUANTITY": "NUM", "ORDINAL": "NUM", "CARDINAL": "NUM",
    # CoNLL-2003 / WikiNER
    "LOCATION": "LOC", "ORGANIZATION": "ORG", "ORGANISATION": "ORG", "MISCELLANEOUS": "MISC",
    # GLiNER-style free labels (upper-cased)
    "COUNTRY": "LOC", "CITY": "LOC", "PLACE": "LOC", "COMPANY": "ORG", "YEAR": "TIME", "NUMBER": "NUM",
}


def map_entity_label(label: str, label_map: Mapping[str, str | None] | None = None) -> str | None:
    """A recogniser's label -> the model's entity type (None: drop the span). `label_map` entries win over
    [`ENTITY_LABEL_MAP`]; they may be keyed by the label as given or upper-cased."""
    label = str(label or "")
    bare = re.sub(r"^[BIES]-", "", label)
    for key in (label, bare, bare.upper()):
        if label_map is not None and key in label_map:
            return label_map[key]
    return ENTITY_LABEL_MAP.get(bare.upper(), bare)


_MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|December|"
           r"Jan\.|Feb\.|Mar\.|Apr\.|Jun\.|Jul\.|Aug\.|Sept?\.|Oct\.|Nov\.|Dec\.")
_DATE = re.compile(
    rf"\b(?:(?:\d{{1,2}}\s+)?(?:{_MONTHS})(?:\s+\d{{1,2}})?,?\s+\d{{3,4}}|(?:{_MONTHS})\s+\d{{1,2}}|\d{{1,2}}\s+(?:{_MONTHS})"
    rf"|(?:1[0-9]|20)\d0s|(?:1[0-9]|20)\d\d(?:\s*[-\u2013]\s*\d{{2,4}})?)\b"
)
_NUMBER = re.compile(r"(?<![\w.])(?:[$\u20ac\u00a3]\s?)?\d+(?:[.,]\d+)*(?:\s?%|\s(?:million|billion|thousand|percent))?(?![\w])")
# Space between the words of one name: never a blank line (a paragraph break), at most one line break.
_NAME_SPACE = r"(?:[^\S\n]+|[^\S\n]*\n[^\S\n]*(?!\s*\n))"
# Capitalised words, joined over "of", "the", "de", ... ("and" separates: "MIT and Yale" are two names).
_CAPITALISED = re.compile(
    rf"\b(?:[A-Z][\w'\u2019.-]*|[A-Z]\.)(?:{_NAME_SPACE}(?:(?:of|the|de|la|von|van|du|del|for){_NAME_SPACE})?(?:[A-Z][\w'\u2019.-]*|[A-Z]\.))*"
)
_ORG_CUES = {"inc", "corp", "ltd", "co", "company", "corporation", "university", "college",
             "school", "party", "bank", "club", "fc", "association", "institute", "records", "band", "army", "council",
             "committee", "ministry", "department", "agency", "league", "group", "airlines", "church", "society"}
_LOC_CUES = {"river", "mountain", "mount", "lake", "island", "islands", "county", "city", "province", "state", "street",
             "valley", "bay", "sea", "ocean", "park", "district", "region", "kingdom", "republic"}
_PER_CUES = {"mr", "mrs", "ms", "miss", "dr", "prof", "professor", "sir", "dame", "lady", "lord", "president", "king",
             "queen", "prince", "princess", "duke", "duchess", "earl", "countess", "baron", "baroness", "emperor",
             "empress", "pope", "senator", "sen", "governor", "gov", "general", "gen", "captain", "capt", "colonel",
             "col", "rev", "reverend", "judge", "justice", "jr", "sr"}
_FUNCTION_WORDS = {"the", "a", "an", "he", "she", "it", "they", "we", "i", "you", "this", "that", "these", "those",
                   "there", "his", "her", "its", "their", "in", "on", "at", "after", "before", "during", "when", "while",
                   "however", "but", "and", "as", "since", "although", "from", "by", "for", "with", "of", "to", "is",
                   "was", "were", "are", "be", "been", "who", "which", "what", "where", "also", "some", "many", "one",
                   "both", "other", "such", "if", "or", "not", "no", "so", "all", "each", "most", "more",
                   # words that open sentences but are not names
                   "nor", "yet", "then", "later", "under", "over", "into", "upon", "about", "above", "across", "against",
                   "along", "among", "around", "behind", "below", "beside", "besides", "between", "beyond", "despite",
                   "though", "because", "through", "throughout", "until", "unlike", "within", "without", "toward",
                   "towards", "here", "now", "today", "meanwhile", "moreover", "furthermore", "thus", "therefore",
                   "instead", "still", "only", "even", "perhaps", "again", "once", "born", "died", "married", "educated",
                   "known", "called", "named", "based", "founded", "located", "worse", "better", "best",
                   "another", "every", "any", "my", "our", "your", "me", "him", "them", "us", "do", "does", "did",
                   "has", "have", "had", "can", "could", "would", "should", "will", "may", "might", "must", "let",
                   "i'd", "i'm", "i've", "i'll"} | {
    m.rstrip(".").lower() for m in _MONTHS.replace("\\", "").split("|")}
# Pronouns that are capitalised anywhere ("Rich Draves and I", "Providence I"): never part of a name.
_PRONOUNS = {"i", "i'd", "i'm", "i've", "i'll", "i\u2019d", "i\u2019m", "i\u2019ve", "i\u2019ll"}


class RuleBasedRecognizer:
    """A dependency-free recogniser for trying hf_docre on raw text without an NER model. It is weak: use a real
    recogniser (spaCy, a token-classification model) for results you keep.

    - TIME: dates with a month name ("4 July 1776", "July 4, 1776", "March 2001"), years ("1998", "1990s",
      "1914-18").
    - NUM: numbers, amounts and percentages ("6.9 billion", "$ 40", "12 %").
    - Capitalised word sequences (joined over "of", "the", "de", ..., never over "and", a blank line or a pronoun
      "I"; a sentence's first word only when it is not a function word or a common sentence opener such as "Born",
      "Nor", "Under"): ORG / LOC / PER when a cue word says so ("Inc.", "University"; "River", "County"; "Dr.",
      "President"), else MISC. Returned labels are DocRED's types.
    """

    def __call__(self, text: str) -> list[dict]:
        spans, taken = [], []

        def free(start, end):
            return all(end <= s or start >= e for s, e in taken)

        def add(start, end, label):
            while end > start and text[end - 1] in ".,;:'\u2019" and not re.search(r"\b[A-Z]\.$|\b(?:Inc|Corp|Ltd|Co|Jr|Sr|St)\.$", text[start:end]):
                end -= 1
            if end > start and free(start, end):
                spans.append({"start": start, "end": end, "label": label})
                taken.append((start, end))

        for match in _DATE.finditer(text):
            add(match.start(), match.end(), "TIME")
        for match in _NUMBER.finditer(text):
            add(match.start(), match.end(), "NUM")
        for match in _CAPITALISED.finditer(text):
            words = [(match.start() + w.start(), match.start() + w.end(), w.group()) for w in re.finditer(r"\S+", match.group())]
            segment = []
            for word in words:
                segment.append(word)
                if word[2].endswith(".") and not _keeps_period(word[2]):  # "Edinburgh." ends the sentence
                    self._add_capitalised(segment, add)
                    segment = []
            self._add_capitalised(segment, add)
        return sorted(spans, key=lambda span: (span["start"], span["end"]))

    @staticmethod
    def _add_capitalised(words, add):
        """One run of capitalised words (char start, end, text): function words opening it dropped, labelled by cue."""
        while words and words[0][2].lower().rstrip(".") in _FUNCTION_WORDS:  # "The", "In", "After" opening a sentence
            words = words[1:]
        while words and words[-1][2].lower().rstrip(".,") in _PRONOUNS:  # "Providence I"
            words = words[:-1]
        if len(words) == 1 and words[0][2].lower().rstrip(".,") in _PRONOUNS:
            return
        if not words:
            return
        folded = {w.lower().rstrip(".,") for _, _, w in words}
        label = ("ORG" if folded & _ORG_CUES else "LOC" if folded & _LOC_CUES
                 else "PER" if folded & _PER_CUES else "MISC")
        while label == "PER" and words and words[0][2].lower().rstrip(".") in _PER_CUES:  # the title is not the name
            words = words[1:]
        if words:
            add(words[0][0], words[-1][1], label)


def _keeps_period(word):
    from .text_docre import OTHER_ABBREVIATIONS, TITLE_ABBREVIATIONS

    stem = word[:-1]
    return bool(re.fullmatch(r"(?:[A-Z]\.)*[A-Z]", stem)) or stem in TITLE_ABBREVIATIONS or stem in OTHER_ABBREVIATIONS


def _is_spacy_language(obj):
    return hasattr(obj, "pipe_names") and hasattr(obj, "vocab") and callable(obj)


def _is_token_classification_pipeline(obj):
    return getattr(obj, "task", None) in ("token-classification", "ner") and callable(obj)


# spaCy's English pipelines in the order the default prefers them (small first: it is the fastest).
_SPACY_ENGLISH = ("en_core_web_sm", "en_core_web_md", "en_core_web_lg", "en_core_web_trf")

NO_RECOGNIZER_MESSAGE = (
    "doc-relation-extraction: raw text needs an entity recogniser, and no spaCy English pipeline with an entity "
    "recogniser is installed. Do one of these:\n"
    "  - online: pip install \"hf_docre[text]\" && python -m spacy download en_core_web_sm\n"
    "  - offline: on a machine with network, download the wheel en_core_web_sm-<version>-py3-none-any.whl from "
    "https://github.com/explosion/spacy-models/releases, copy it here, then "
    "pip install spacy <that wheel>; a pipeline installed under another package name is found too\n"
    "  - name a pipeline: recognizer=\"spacy:<package name or folder>\"\n"
    "  - GLiNER: pip install gliner, then recognizer=\"gliner:<model folder or Hub id>\"\n"
    "  - a transformers token-classification pipeline, e.g. recognizer=pipeline(\"token-classification\", "
    "model=..., aggregation_strategy=\"first\")\n"
    "  - a callable text -> [{\"start\", \"end\", \"label\"}, ...]\n"
    "  - recognizer=\"rules\": a weak recogniser with no dependency, for trying things out\n"
    "  - or give the entities yourself: {\"text\": ..., \"entities\": [{\"start\", \"end\", \"label\"}, ...]}"
)


def installed_spacy_pipelines(lang: str = "en") -> list[str]:
    """Installed spaCy pipeline packages of language `lang` that have an entity recogniser, best first: spaCy's
    own `en_core_web_{sm,md,lg,trf}`, then any other package that registers a pipeline (the `spacy_models` entry
    points spaCy's `util.get_installed_models()` reads, e.g. a re-upload under another name), by name. Read from
    the packages' `meta.json`, without importing spaCy."""
    import importlib.metadata
    import importlib.util
    import json
    import os

    modules = list(_SPACY_ENGLISH) if lang == "en" else []
    try:
        modules += sorted({entry.value.split(":")[0] for entry in importlib.metadata.entry_points(group="spacy_models")})
    except Exception:  # pragma: no cover - broken metadata of some other package
        pass
    found = []
    for module in dict.fromkeys(modules):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        meta_path = os.path.join(list(spec.submodule_search_locations)[0], "meta.json")
        try:
            with open(meta_path, encoding="utf-8") as handle:
                meta = json.load(handle)
        except (OSError, ValueError):
            continue
        if meta.get("lang") == lang and "ner" in (meta.get("pipeline") or meta.get("components") or []):
            found.append(module)
    return found


def load_spacy_pipeline(name: str):
    """`spacy.load(name)` for an installed package or a folder; a package spaCy cannot find by its distribution
    name (installed under another one) is loaded through its module's `load()`."""
    try:
        import spacy
    except ImportError as error:
        raise ImportError(f"recognizer=\"spacy:{name}\" needs spaCy: pip install \"hf_docre[text]\"") from error
    try:
        return spacy.load(name)
    except OSError:
        import importlib

        try:
            module = importlib.import_module(name)
        except ImportError:
            module = None
        if module is not None and hasattr(module, "load"):
            return module.load()
        installed = installed_spacy_pipelines()
        raise OSError(f"recognizer=\"spacy:{name}\": no spaCy pipeline of that name or folder is installed"
                      + (f"; installed English pipelines: {installed}" if installed else "") + ".") from None


def default_recognizer():
    """The first installed spaCy English pipeline with an entity recogniser (`installed_spacy_pipelines`), or an
    ImportError that says what to install (online and offline) or pass instead."""
    for name in installed_spacy_pipelines():
        import importlib

        module = importlib.import_module(name)
        if hasattr(module, "load"):
            return module.load()
    raise ImportError(NO_RECOGNIZER_MESSAGE)


# DocRED's six types as GLiNER labels (GLiNER matches natural-language label names).
GLINER_LABELS = {"person": "PER", "organization": "ORG", "location": "LOC", "date or time": "TIME",
                 "number or amount": "NUM", "other named entity (event, work, product, nationality, language)": "MISC"}


class GLiNERRecognizer:
    """A GLiNER model (`gliner` on PyPI, Zaratiana et al. 2024) as a recogniser with DocRED's six types as its
    labels. The text is cut into pieces of whole sentences of at most `max_words` words (GLiNER reads 384
    tokens); labels come back as DocRED's types and spans keep GLiNER's `score`.

    Args:
        model: a loaded `gliner.GLiNER`, or a folder / Hub id for `GLiNER.from_pretrained`.
        labels: {GLiNER label: DocRED type}; default `GLINER_LABELS`.
        threshold: GLiNER's score threshold.
    """

    def __init__(self, model, labels: Mapping[str, str] | None = None, threshold: float = 0.5, max_words: int = 200):
        if isinstance(model, str):
            try:
                from gliner import GLiNER
            except ImportError as error:
                raise ImportError(f"recognizer=\"gliner:{model}\" needs GLiNER: pip install gliner") from error
            import os

            model = GLiNER.from_pretrained(model, local_files_only=os.path.isdir(model))
        if not hasattr(model, "predict_entities"):
            raise TypeError(f"GLiNERRecognizer: {type(model).__name__} has no `predict_entities`; pass a gliner.GLiNER")
        self.model, self.labels, self.threshold, self.max_words = model, dict(labels or GLINER_LABELS), threshold, max_words

    def __call__(self, text: str) -> list[dict]:
        pieces, current = [], None
        for start, end in sentence_spans(text):
            words = len(text[start:end].split())
            if current is not None and current[2] + words <= self.max_words:
                current = (current[0], end, current[2] + words)
            else:
                if current is not None:
                    pieces.append(current[:2])
                current = (start, end, words)
        if current is not None:
            pieces.append(current[:2])
        spans = []
        for start, end in pieces:
            for found in self.model.predict_entities(text[start:end], list(self.labels), threshold=self.threshold):
                spans.append({"start": start + found["start"], "end": start + found["end"],
                              "label": self.labels.get(found["label"], found["label"]), "score": float(found.get("score", 1.0))})
        return spans


def resolve_recognizer(recognizer) -> Callable:
    """`recognizer` as given to the pipeline -> the object `recognize_entities` calls."""
    if recognizer is None:
        return default_recognizer()
    if isinstance(recognizer, str):
        if recognizer == "rules":
            return RuleBasedRecognizer()
        if recognizer.startswith("spacy:"):
            return load_spacy_pipeline(recognizer.split(":", 1)[1])
        if recognizer.startswith("gliner:"):
            return GLiNERRecognizer(recognizer.split(":", 1)[1])
        raise ValueError(f"recognizer={recognizer!r}: a string recogniser is \"rules\", \"spacy:<pipeline name or "
                         "folder>\" or \"gliner:<model folder or Hub id>\"")
    if hasattr(recognizer, "predict_entities"):  # a loaded gliner.GLiNER
        return GLiNERRecognizer(recognizer)
    if not callable(recognizer):
        raise TypeError(f"recognizer must be callable (a spaCy Language, a token-classification pipeline, a function), got {type(recognizer).__name__}")
    return recognizer


def _merge_token_tags(items, offset):
    """Token-classification output of one text -> spans; B-/I- tags (aggregation_strategy="none") are merged."""
    spans = []
    previous_index = None
    for item in items:
        if "entity_group" in item:
            spans.append({"start": item["start"] + offset, "end": item["end"] + offset, "label": item["entity_group"]})
            continue
        tag = str(item.get("entity", ""))
        prefix, _, label = tag.partition("-") if re.match(r"^[BIES]-", tag) else ("", "", tag)
        index = item.get("index")
        continues = (spans and prefix in ("I", "E", "") and spans[-1]["label"] == label
                     and (index is None or previous_index is None or index == previous_index + 1))
        if continues:
            spans[-1]["end"] = item["end"] + offset
        else:
            spans.append({"start": item["start"] + offset, "end": item["end"] + offset, "label": label})
        previous_index = index
    return spans


_CONNECTORS = {"of", "the", "de", "la", "du", "del", "von", "van", "and", "&", "for", "on", "upon"}
# Words that make the capitalised word before them a place ("Rakai District"): a recogniser that stopped before them
# gets them added, and the span becomes a location.
_PLACE_WORDS = "District|County|Province|Prefecture|Region|Governorate|Oblast|Township|Parish"
_DETERMINERS = ("the ", "a ", "an ")


def repair_span_edges(text: str, spans: Sequence[dict]) -> list[dict]:
    """Recogniser spans with their edges cleaned, as DocRED writes mentions: a leading lower-case determiner ("the
    Beatles") and a trailing possessive ("Ada's") are cut, unless capitalised words follow on the same line, which
    the name was cut before ("Kibaale Children's" + "Centre"); a span that ends in a connecting word ("the Democratic
    Republic of the") is joined to the span or the capitalised words right after it on the same line ("Congo"),
    else the dangling words are cut; a place word right after a span is added and makes it a location ("Rakai" +
    "District"). Spans with an `entity_id` are kept as they are."""
    spans = sorted((dict(span) for span in spans), key=lambda span: (span["start"], -span["end"]))
    out = []
    i = 0
    while i < len(spans):
        span = spans[i]
        i += 1
        if span.get("entity_id") is not None:
            out.append(span)
            continue
        start, end = span["start"], span["end"]
        for determiner in _DETERMINERS:
            if text.startswith(determiner, start) and end - start > len(determiner):
                start += len(determiner)
        possessive = re.search(r"(?:'|\u2019)s?$", text[start:end])
        continued = re.match(rf"{_NAME_SPACE}([A-Z][\w'\u2019-]*(?:{_NAME_SPACE}[A-Z][\w'\u2019-]*)*)", text[end:])
        if possessive and continued and ((i < len(spans) and spans[i]["start"] < end + continued.end())
                                         or map_entity_label(span.get("label", "")) == "PER"):
            continued = None  # the next span starts there, or a person's possessive ("Babbage's Engine")
        if possessive and continued:  # "Kibaale Children's" + "Centre": a name cut after its possessive
            end += continued.end()
        elif possessive and end - start - len(possessive.group()) > 1 and text[start:end] != possessive.group():
            end -= len(possessive.group())
        place = re.match(rf"{_NAME_SPACE}({_PLACE_WORDS})\b", text[end:])
        if place and not (i < len(spans) and spans[i]["start"] < end + place.end()):  # "Rakai" + "District"
            end += place.end()
            span["label"] = "LOC" if map_entity_label(span.get("label", "")) in ("PER", "MISC", "ORG", None) else span["label"]
        words = list(re.finditer(r"\S+", text[start:end]))
        if len(words) >= 2 and words[-1].group().casefold() in _CONNECTORS:
            gap = re.match(r"[^\S\n]+", text[end:])
            after = end + (gap.end() if gap else 0)
            if gap and i < len(spans) and spans[i]["start"] == after and spans[i].get("entity_id") is None:
                end = spans[i]["end"]  # "the Democratic Republic of the" + "Congo"
                i += 1
            elif gap and re.match(r"[A-Z]", text[after:after + 1]):
                end = after + re.match(r"[A-Z][\w'\u2019-]*", text[after:]).end()
            else:
                while len(words) >= 2 and words[-1].group().casefold() in _CONNECTORS:
                    words.pop()
                end = start + words[-1].end()
        if end > start:
            out.append({**span, "start": start, "end": end})
    return out


def recognize_entities(recognizer: Callable, text: str, sentences: Sequence | None = None,
                       label_map: Mapping[str, str | None] | None = None) -> list[dict]:
    """Flat `{start, end, label}` spans of `text` found by `recognizer` (resolved), labels mapped onto the model's
    types and edges cleaned (`repair_span_edges`). A token-classification pipeline is run sentence by sentence (one call): on `sentences` (strings in order
    or `[start, end]` offsets) when given, else on the text's own segmentation; the other recognisers see the text."""
    if _is_spacy_language(recognizer):
        raw = [{"start": e.start_char, "end": e.end_char, "label": e.label_} for e in recognizer(text).ents]
    elif _is_token_classification_pipeline(recognizer):
        pieces = sentence_spans(text, sentences)
        outputs = recognizer([text[s:e] for s, e in pieces])
        raw = [span for (s, _), items in zip(pieces, outputs) for span in _merge_token_tags(items, s)]
    else:
        raw = recognizer(text)
        if raw is None:
            raise TypeError("the recognizer returned None; it must return a list of spans ({start, end, label} dicts, tuples or spaCy Spans)")
    from .text_docre import _span_fields

    spans = []
    for index, span in enumerate(raw):
        start, end, label, _, entity_id = _span_fields(span, index)
        label = map_entity_label(label, label_map)
        if label is None:
            continue
        item = {"start": start, "end": end, "label": label}
        if entity_id is not None:
            item["entity_id"] = entity_id
        score = span.get("score") if isinstance(span, dict) else None
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            item["score"] = float(score)
        spans.append(item)
    return repair_span_edges(text, spans)
