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
- `None`: the default, spaCy's `en_core_web_sm` (`pip install "hf_docre[text]"` then
  `python -m spacy download en_core_web_sm`).

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
_PER_CUES = {"mr", "mrs", "ms", "dr", "prof", "sir", "president", "king", "queen", "jr", "sr"}
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


def default_recognizer():
    """spaCy's `en_core_web_sm`, or an error that says what to install or pass."""
    try:
        import spacy
    except ImportError:
        spacy = None
    if spacy is not None:
        try:
            return spacy.load("en_core_web_sm")
        except OSError:
            pass
    raise ImportError(
        "doc-relation-extraction: raw text needs an entity recogniser and the default one is not installed. Either "
        "install it (`pip install \"hf_docre[text]\"` then `python -m spacy download en_core_web_sm`), or pass "
        "`recognizer=`: a spaCy Language, a transformers token-classification pipeline, a callable text -> "
        "[{start, end, label}], or \"rules\" (a weak dependency-free recogniser); or give the entities yourself: "
        "{'text': ..., 'entities': [{start, end, label}, ...]}."
    )


def resolve_recognizer(recognizer) -> Callable:
    """`recognizer` as given to the pipeline -> the object `recognize_entities` calls."""
    if recognizer is None:
        return default_recognizer()
    if isinstance(recognizer, str):
        if recognizer == "rules":
            return RuleBasedRecognizer()
        if recognizer.startswith("spacy:"):
            import spacy

            return spacy.load(recognizer.split(":", 1)[1])
        raise ValueError(f"recognizer={recognizer!r}: a string recogniser is \"rules\" or \"spacy:<model name>\"")
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


def recognize_entities(recognizer: Callable, text: str, sentences: Sequence | None = None,
                       label_map: Mapping[str, str | None] | None = None) -> list[dict]:
    """Flat `{start, end, label}` spans of `text` found by `recognizer` (resolved), labels mapped onto the model's
    types. A token-classification pipeline is run sentence by sentence (one call): on `sentences` (strings in order
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
        spans.append(item)
    return spans
