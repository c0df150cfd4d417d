"""Plain text with character-span entities -> a DocRED-format document.

Loaded through ``trust_remote_code`` by the pipeline: flat sibling, standard library only.

- Words: runs of word characters; numbers with decimal or thousands separators (`6.9`, `1,000`) and times (`10:30`);
  dotted abbreviations (`U.S.`, `e.g.`), single-letter initials (`J.`) and known abbreviations (`Dr.`, `Inc.`,
  `Jan.`, ...) keep their period; URLs and e-mail addresses are one word (without trailing punctuation); the
  clitics `'s`, `'re`, `'ve`, `'ll`, `'d`, `'m`, `n't` are words of their own; any other non-space character is a
  word. A word is also cut where a mention starts or ends inside it, unless that would cut between two letters or
  digits (then the mention is an error, or is widened with `snap_spans=True`).
- Sentences end after `.`, `!`, `?` or `...` (and any closing quotes or brackets right after it) when the next word
  starts with an upper-case letter, a digit or an opening quote or bracket, and at blank lines. An abbreviation
  ends a sentence only when the next word is a common sentence opener ("The", "He", "In", ...); a title (`Dr.`,
  `Mr.`, ...) or an initial never does. A sentence never ends inside a mention.
- Your own segmentation wins: pass `sentences` (strings found in order in the text, or `[start, end]` character
  offsets), `words` (the same forms), or a `sentence_splitter` callable (text -> either form; e.g. a wrapper
  around spaCy, pysbd or NLTK).

Entities come either as DocRED-style entities (`{"mentions": [[start, end], ...], "type", "name"}`) or as the flat
span list NER tools give (`{"start", "end", "label"}`, with optional `"text"` and `"entity_id"`; also transformers'
`entity_group`/`word` keys, spaCy `Span`s, GLiNER dicts and `(start, end, label)` tuples). Flat spans are grouped
into entities by `entity_id` when given, else by [`normalize_entity_name`] and label (see [`group_entity_spans`]).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence

# Abbreviations that keep their period, matched with the case shown. Titles never end a sentence; the others may
# (see the module docstring). Words that often end a sentence ("art", "no", "sun") are left out on purpose.
TITLE_ABBREVIATIONS = {
    "Mr", "Mrs", "Ms", "Dr", "Prof", "St", "Mt", "Ft", "Gen", "Sen", "Rep", "Gov", "Rev", "Capt", "Lt", "Col", "Sgt",
    "Cmdr", "Adm", "Maj", "Pres", "Hon", "Fr", "Messrs", "Mme", "Mlle", "No", "Nos", "Vol", "Fig", "Figs", "Dept",
    "Univ", "vs", "ca", "approx", "cf", "pp", "vol", "fig", "figs", "viz",
}
OTHER_ABBREVIATIONS = {
    "Inc", "Ltd", "Co", "Corp", "Plc", "PLC", "LLC", "Bros", "Jr", "Sr", "Ave", "Blvd", "Rd", "etc", "al",
    "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec",
}
_TITLES_FOLDED = {a.lower() for a in TITLE_ABBREVIATIONS}
SENTENCE_OPENERS = {
    "the", "a", "an", "he", "she", "it", "they", "we", "i", "you", "this", "that", "these", "those", "there", "his",
    "her", "its", "their", "our", "in", "on", "at", "after", "before", "during", "when", "while", "however", "but",
    "and", "as", "since", "although", "today", "then", "later", "meanwhile", "from", "by", "for", "with", "one",
}
_CLOSERS = {'"', "'", "\u201d", "\u2019", ")", "]", "}", "\u00bb"}
_TERMINALS = {".", "!", "?", "...", "\u2026"}

_TOKEN = re.compile(
    r"""
    (?P<url>(?:https?://|www\.)[^\s<>"]+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)
    | (?P<dotted>(?:[^\W\d_]\.){2,})                  # U.S., e.g., i.e.
    | (?P<number>\d+(?:[.,:]\d+)+)                     # 6.9, 1,000, 10:30
    | (?P<clitic>(?<=\w)(?:'|\u2019)(?:s|re|ve|ll|d|m)\b|(?<=\w)n't\b)
    | (?P<word>\w+?(?=n't\b)|\w+)
    | (?P<ellipsis>\.\.\.)
    | (?P<other>\S)
    """,
    re.VERBOSE | re.IGNORECASE,
)


class SpanAlignmentError(ValueError):
    """A character span of the text input that cannot be mapped onto words and sentences."""


def tokenize_words(text: str, start: int = 0, end: int | None = None, cuts: Iterable[int] = ()) -> list[tuple[int, int]]:
    """Words of `text[start:end]` as `(char_start, char_end)` pairs (see the module docstring for the rules).

    `cuts`: character offsets (mention boundaries) where a word is cut in two when the characters on both sides
    are not both letters/digits.
    """
    end = len(text) if end is None else end
    spans = []
    for match in _TOKEN.finditer(text, start, end):
        s, e = match.span()
        if match.lastgroup == "url":
            while e > s + 1 and text[e - 1] in ".,;:!?)]}'\"":
                e -= 1
            spans.append((s, e))
            if e < match.end():
                spans.extend(tokenize_words(text, e, match.end()))
            continue
        if match.lastgroup == "word" and e < end and text[e] == "." and _is_abbreviation(text[s:e]):
            e += 1
        spans.append((s, e))
    if cuts:
        spans = _cut_at(spans, text, sorted(set(cuts)))
    # An abbreviation's period was also the start of the next match: keep only what is left of that match.
    merged = []
    for s, e in spans:
        if merged and s < merged[-1][1]:
            s = merged[-1][1]
            if s >= e:
                continue
        merged.append((s, e))
    return merged


def _is_abbreviation(word):
    return word in TITLE_ABBREVIATIONS or word in OTHER_ABBREVIATIONS or (len(word) == 1 and word.isalpha() and word.isupper())


def _cut_at(spans, text, cuts):
    result = []
    index = 0
    for s, e in spans:
        pieces = [s]
        while index < len(cuts) and cuts[index] <= s:
            index += 1
        j = index
        while j < len(cuts) and cuts[j] < e:
            c = cuts[j]
            if not (text[c - 1].isalnum() and text[c].isalnum()):
                pieces.append(c)
            j += 1
        pieces.append(e)
        result.extend((a, b) for a, b in zip(pieces, pieces[1:]) if b > a)
    return result


def split_sentences(text: str, words: list[tuple[int, int]]) -> list[list[int]]:
    """Sentence starts (indices into `words`, the first is 0) for words given as `(char_start, char_end)` pairs."""
    starts = [0] if words else []
    i = 0
    while i < len(words):
        s, e = words[i]
        token = text[s:e]
        terminal = token in _TERMINALS
        abbreviation = token.endswith(".") and len(token) > 1 and not terminal
        if not (terminal or abbreviation):
            if i + 1 < len(words) and _blank_line_between(text, e, words[i + 1][0]):
                starts.append(i + 1)
            i += 1
            continue
        j = i + 1
        while j < len(words) and text[words[j][0] : words[j][1]] in _CLOSERS and words[j][0] == words[j - 1][1]:
            j += 1  # closing quotes / brackets right after the terminal belong to this sentence
        if j >= len(words):
            break
        next_word = text[words[j][0] : words[j][1]]
        if _blank_line_between(text, words[j - 1][1], words[j][0]):
            starts.append(j)
        elif words[j][0] > words[j - 1][1] and _opens_sentence(next_word):
            if terminal:
                starts.append(j)
            else:
                stem = token[:-1].lower()
                initial_or_title = stem in _TITLES_FOLDED or (len(stem) == 1 and stem.isalpha())
                if not initial_or_title and next_word.lower() in SENTENCE_OPENERS:
                    starts.append(j)
        i = j
    return starts


def _blank_line_between(text, start, end):
    return text.count("\n", start, end) >= 2


def _opens_sentence(word):
    first = word[0]
    return first.isupper() or first.isdigit() or first in "\"'\u201c\u2018([{\u00ab"


def normalize_entity_name(name: str) -> str:
    """The key under which flat NER spans are grouped into one entity: NFKC, case-folded, a leading "the " and a
    trailing possessive removed, every character that is not a letter, digit or space dropped ("U.S." = "US"),
    spaces collapsed."""
    name = unicodedata.normalize("NFKC", name).casefold().strip()
    name = re.sub(r"^the\s+", "", name)
    name = re.sub(r"(?:'|\u2019)s$", "", name)
    name = re.sub(r"[^\w\s]|_", "", name)
    return " ".join(name.split())


def _offset(value, where):
    """A character offset: an int (numpy ints too), never a float, a string or a bool, which would be truncated or
    read silently."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise SpanAlignmentError(f"{where}: character offsets must be ints, got {value!r} ({type(value).__name__})")
    return int(value)


def _span_fields(span, index):
    """(start, end, label, text, entity_id) of one flat NER span in any of the accepted forms."""
    where = f"entities[{index}]"
    if isinstance(span, (tuple, list)):
        if len(span) not in (2, 3):
            raise SpanAlignmentError(f"entities[{index}]: a span tuple is (start, end) or (start, end, label), got {span!r}")
        if len(span) == 3 and not isinstance(span[2], str):
            raise SpanAlignmentError(f"entities[{index}]: the third item of a span tuple is its label (a string), got {span!r}")
        return _offset(span[0], where), _offset(span[1], where), (span[2] if len(span) == 3 else ""), None, None
    if not isinstance(span, dict):  # spaCy Span and similar objects
        if hasattr(span, "start_char") and hasattr(span, "end_char"):
            return (_offset(span.start_char, where), _offset(span.end_char, where), getattr(span, "label_", ""), None,
                    getattr(span, "entity_id", None))
        raise SpanAlignmentError(f"entities[{index}]: expected a span dict, tuple or spaCy Span, got {type(span).__name__}")
    start = span.get("start", span.get("start_char"))
    end = span.get("end", span.get("end_char"))
    if start is None or end is None:
        raise SpanAlignmentError(f"entities[{index}] has no `start`/`end` character offsets (and no `mentions`): {span!r}")
    label = span.get("label", span.get("entity_group", span.get("entity", span.get("type", ""))))
    return _offset(start, where), _offset(end, where), label or "", span.get("text", span.get("word")), span.get("entity_id")


MENTION_GROUPING_RULES = ("exact", "name", "acronym", "surname")
_NAME_STOPWORDS = {"of", "the", "and", "for", "de", "la", "le", "du", "des", "del", "der", "von", "van", "in", "on", "at", "to", "&"}
_PERSON_TITLES = {"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "dame", "lord", "lady", "st", "president", "king", "queen",
                  "pope", "saint", "gen", "general", "sen", "senator", "rep", "gov", "governor", "rev", "capt", "col"}


# Words a company name may end with that its acronym leaves out ("Archer Daniels Midland Company" -> ADM).
_LEGAL_SUFFIXES = {"company", "co", "inc", "incorporated", "corp", "corporation", "ltd", "limited", "plc", "llc", "ag",
                   "sa", "gmbh", "group", "holdings"}
# Labels that say nothing about the kind of entity: they yield to any other label of the same name.
GENERIC_LABELS = {"MISC", ""}
_NON_NAME_LABELS = {"TIME", "NUM"}
_SURNAME_PARTICLES = {"de", "van", "von", "der", "den", "da", "di", "du", "del", "della", "le", "la", "ter", "ten", "bin",
                      "ibn", "al", "el", "mac", "st"}


def _acronyms(name):
    """Acronyms a multi-word name may be written as: the initials of its capitalised words, with and without the
    initials of its stop words, and without a trailing legal form ("Bank of America" -> BA, BOA; "Archer Daniels
    Midland Company" -> ADMC, ADM)."""
    words = re.findall(r"[^\W\d_][\w'-]*", name)
    forms = [words]
    while len(words) > 2 and words[-1].casefold().rstrip(".") in _LEGAL_SUFFIXES:
        words = words[:-1]
        forms.append(words)
    acronyms = set()
    for words in forms:
        if len(words) < 2:
            continue
        content = "".join(w[0] for w in words if w.casefold() not in _NAME_STOPWORDS and w[0].isupper())
        every = "".join(w[0] for w in words)
        acronyms |= {a.upper() for a in (content, every) if len(a) >= 2}
    return acronyms


def _acronym_form(name):
    """"U.N." / "UN" -> "UN" when the name is written as an acronym (2-6 capitals, dots allowed), else None."""
    compact = name.replace(".", "").replace(" ", "")
    return compact if 2 <= len(compact) <= 6 and compact.isalpha() and compact.isupper() else None


def _person_name_words(name):
    words = re.findall(r"[^\W\d_][\w'.-]*", name)
    while words and words[0].casefold().rstrip(".") in _PERSON_TITLES:
        words = words[1:]
    words = [re.sub(r"(?:'|\u2019)s?$", "", w.rstrip(".")) for w in words]  # "Ada's", "Jones'"
    return [w for w in words if w]


def _looks_like_person(name):
    """Two to five capitalised words or initials, no stop word: "J. R. R. Tolkien", "Augustus De Morgan"."""
    words = _person_name_words(name)
    return 2 <= len(words) <= 5 and all(w[:1].isupper() for w in words) and not any(
        w.casefold() in _NAME_STOPWORDS or w.casefold() in _LEGAL_SUFFIXES for w in words)


def group_entity_spans(text: str, spans: Iterable, rules: Sequence[str] = ("name", "acronym", "surname"),
                       person_labels: Iterable[str] = ("PER", "PERSON"), across_labels: bool = True) -> list[dict]:
    """Flat NER spans -> entities `[{"mentions": [[start, end], ...], "type", "name"}]`.

    Spans with an `entity_id` are grouped by it and by nothing else. The other spans are grouped by `rules`, in
    this order:

    - `"exact"`: the same text and label; `"name"`: the same [`normalize_entity_name`] ("U.S." = "US", "the
      Beatles" = "Beatles", "Ada's" = "Ada"). Without either, every span is an entity of its own.
    - `"acronym"`: a name written as 2-6 capitals ("UN", "U.N.") joins the one entity whose name has those
      initials ("United Nations"; "Bank of America" gives both "BA" and "BOA"; a trailing legal form may be left
      out: "ADM" = "Archer Daniels Midland Company").
    - `"surname"`: a one-word name ("Doe", "Dr. Doe"; titles are ignored) joins the one multi-word person entity
      whose last word it is ("Jane Doe"); a one-word person name also joins the one whose first word it is
      ("Ada" = "Ada Lovelace"). A surname with a particle counts as one word ("De Morgan" = "Augustus De Morgan").
      Person labels: `person_labels`.

    `across_labels` (default): recognisers disagree on labels ("Babbage" PER in one sentence, ORG in the next), so
    the rules may join spans whose labels differ. The name and acronym rules join any labels except a date or
    number (TIME, NUM) with a name; the surname rule joins a one-word name of any such label to a full name
    labelled as a person, and a generic label (MISC) on both sides when the full name looks like a person's ("J. R.
    R. Tolkien" / "Tolkien"). With `across_labels=False` only equal labels are joined.

    The acronym and surname rules never merge when two or more entities match (an ambiguous acronym or surname
    stays an entity of its own). Whitespace at a span's edges is trimmed; a span given twice counts once. Entities
    are ordered by their first mention, mentions by position. The type is the mentions' most frequent label; a tie
    goes to the label with the highest total `score` where the spans have scores, else to a specific label over a
    generic one (MISC), else to the first. The name is the first mention's text.
    """
    unknown = sorted(set(rules) - set(MENTION_GROUPING_RULES))
    if unknown:
        raise ValueError(f"unknown mention grouping rule(s) {unknown}; the rules are {list(MENTION_GROUPING_RULES)}")
    groups = {}
    for index, span in enumerate(spans):
        start, end, label, _, entity_id = _span_fields(span, index)
        if not 0 <= start < end <= len(text):
            raise SpanAlignmentError(f"entities[{index}] = [{start}, {end}) is not a non-empty span of the {len(text)}-character text")
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start == end:
            raise SpanAlignmentError(f"entities[{index}] covers only whitespace")
        score = span.get("score") if isinstance(span, dict) else None
        score = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None
        name_class = "value" if str(label).upper() in _NON_NAME_LABELS else "name"
        if entity_id is not None:
            key = ("id", entity_id)
        elif "name" in rules:
            key = ("name", normalize_entity_name(text[start:end]), name_class if across_labels else label)
        elif "exact" in rules:
            key = ("exact", text[start:end], name_class if across_labels else label)
        else:
            key = ("span", start, end, label)
        groups.setdefault(key, []).append((start, end, label, score))

    keys = list(groups)
    parent = {key: key for key in keys}

    def find(key):
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def majority_label(mentions):
        labels = [label for _, _, label, _ in mentions]
        counts = {label: labels.count(label) for label in dict.fromkeys(labels)}
        scores = {label: sum(score or 0.0 for _, _, lab, score in mentions if lab == label) for label in counts}
        return max(counts, key=lambda label: (counts[label], scores[label], str(label).upper() not in GENERIC_LABELS))

    names = {key: text[slice(*min(mentions)[:2])] for key, mentions in groups.items()}
    group_labels = {key: majority_label(mentions) for key, mentions in groups.items()}
    name_of, label_of = names.__getitem__, group_labels.__getitem__

    def is_value(key):
        return str(label_of(key)).upper() in _NON_NAME_LABELS

    def same_kind(a, b):  # labels the name and acronym rules may join
        if not across_labels:
            return label_of(a) == label_of(b)
        return is_value(a) == is_value(b)

    linkable = [key for key in keys if key[0] != "id"]
    if "acronym" in rules:
        expansions = {}
        for key in linkable:
            for acronym in _acronyms(name_of(key)):
                expansions.setdefault(acronym, []).append(key)
        for key in linkable:
            acronym = _acronym_form(name_of(key))
            matches = [k for k in expansions.get(acronym, []) if k != key and same_kind(k, key)] if acronym else []
            if len({find(k) for k in matches}) == 1:
                parent[find(key)] = find(matches[0])
    if "surname" in rules:
        person_labels = {label.upper() for label in person_labels}

        def is_person(key):
            return str(label_of(key)).upper() in person_labels

        def full_name(key):  # a multi-word name the surname rule may link to
            if is_person(key):
                return True
            return across_labels and str(label_of(key)).upper() in GENERIC_LABELS and _looks_like_person(name_of(key))

        def may_join(short, full):
            if not across_labels:
                return is_person(short) and is_person(full)
            if is_value(short):
                return False
            return is_person(full) or is_person(short) or str(label_of(short)).upper() in GENERIC_LABELS

        last_words, first_words = {}, {}
        for key in linkable:
            words = _person_name_words(name_of(key))
            if len(words) >= 2 and full_name(key):
                last_words.setdefault(words[-1].casefold(), set()).add(key)
                first_words.setdefault(words[0].casefold(), set()).add(key)
                if len(words) >= 3 and words[-2].casefold() in _SURNAME_PARTICLES:  # "Augustus De Morgan"
                    last_words.setdefault(" ".join(words[-2:]).casefold(), set()).add(key)
        for key in linkable:
            words = _person_name_words(name_of(key))
            if len(words) == 2 and words[0].casefold() in _SURNAME_PARTICLES:  # "De Morgan", "van Gogh"
                words = [" ".join(words)]
            if len(words) != 1:
                continue
            matches = {k for k in last_words.get(words[0].casefold(), set()) if may_join(key, k)}
            if not matches and is_person(key):  # a given name alone ("Ada"), labelled as a person
                matches = {k for k in first_words.get(words[0].casefold(), set()) if is_person(k)}
            if len({find(k) for k in matches}) == 1:
                parent[find(key)] = find(next(iter(matches)))

    merged = {}
    for key in keys:
        merged.setdefault(find(key), []).extend(groups[key])
    entities = []
    for mentions in merged.values():
        by_span = {}
        for start, end, label, score in mentions:  # a span given twice counts once
            by_span.setdefault((start, end, label), score)
        mentions = sorted((s, e, label, score) for (s, e, label), score in by_span.items())
        first = mentions[0]
        entities.append({"mentions": [list(p) for p in dict.fromkeys((s, e) for s, e, _, _ in mentions)],
                         "type": majority_label(mentions), "name": text[first[0] : first[1]]})
    entities.sort(key=lambda entity: tuple(entity["mentions"][0]))
    return entities


def entity_input_form(entities: Sequence) -> str:
    """`"entities"` (each with `mentions`), `"spans"` (flat NER spans) or `"empty"`; raises on a mix."""
    if entities is not None and not isinstance(entities, (list, tuple)):
        raise SpanAlignmentError(
            f"`entities` must be a list (of entities with `mentions`, or of flat spans), got {type(entities).__name__}"
            + (" (wrap a single entity in a list)" if isinstance(entities, dict) else "")
        )
    if not entities:
        return "empty"
    has_mentions = [isinstance(e, dict) and "mentions" in e for e in entities]
    if all(has_mentions):
        return "entities"
    if not any(has_mentions):
        return "spans"
    raise SpanAlignmentError(
        "entities mix entity dicts with `mentions` and flat spans; give either entities with `mentions` lists, or "
        "a flat list of {start, end, label} spans (grouped into entities by `entity_id` or by name)"
    )


def _locate(text, items, what, start=0, end=None):
    """`items` (strings found in order, or [start, end] offsets) -> [(start, end)]."""
    end = len(text) if end is None else end
    spans, cursor = [], start
    for i, item in enumerate(items):
        if isinstance(item, str):
            found = text.find(item, cursor, end)
            if found < 0 or not item:
                raise SpanAlignmentError(f"{what}[{i}] = {item[:40]!r} is not found in the text after character {cursor}")
            spans.append((found, found + len(item)))
        else:
            s, e = int(item[0]), int(item[1])
            if not (cursor <= s < e <= end):
                raise SpanAlignmentError(f"{what}[{i}] = [{s}, {e}) must be a non-empty span after the previous one, within [{cursor}, {end})")
            spans.append((s, e))
        cursor = spans[-1][1]
    return spans


def sentence_spans(text: str, sentences: Sequence | None = None) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text`: the given ones (strings in order or offsets), else the
    module's own segmentation."""
    if sentences is not None:
        return _locate(text, sentences, "sentences")
    words = tokenize_words(text)
    starts = split_sentences(text, words)
    ends = starts[1:] + [len(words)]
    return [(words[s][0], words[e - 1][1]) for s, e in zip(starts, ends)]


def text_to_document(
    text: str,
    entities: Sequence,
    title: str | None = None,
    snap_spans: bool = False,
    sentences: Sequence | None = None,
    words: Sequence | None = None,
    sentence_splitter: Callable | None = None,
    mention_grouping: Sequence[str] = ("name", "acronym", "surname"),
) -> dict:
    """`{"text", "entities"}` input -> a DocRED-format document.

    Args:
        text: the document.
        entities: DocRED-style entities with character-span `mentions`, or flat NER spans (module docstring).
        title: the document's title.
        snap_spans: widen a mention that starts or ends inside a word to the words it touches, instead of raising.
        sentences / words: your own segmentation (strings in order, or `[start, end]` offsets); words must lie
            inside the sentences.
        sentence_splitter: a callable `text -> sentences` (either form), used when `sentences` is not given.
        mention_grouping: the rules that group flat spans into entities (see [`group_entity_spans`]).
    Returns:
        the document (`title`, `sents`, `vertexSet`) plus `text` and `offsets`: `{"words": [[[start, end], ...]
        per sentence], "mentions": [[[start, end], ...] per entity], "sentences": [[start, end], ...]}` character
        offsets, which the pipeline uses to report spans.
    Raises:
        [`SpanAlignmentError`] naming the entity, the mention and the nearest word-aligned span.
    """
    if not isinstance(text, str):
        raise SpanAlignmentError(f"`text` must be a string, got {type(text).__name__}")
    form = entity_input_form(entities)
    if form == "spans":
        entities = group_entity_spans(text, entities, mention_grouping)
    mention_spans = []
    for e, entity in enumerate(entities):
        if not isinstance(entity, dict):
            raise SpanAlignmentError(f"entities[{e}] must be a dict, got {type(entity).__name__}")
        spans = []
        mentions = entity.get("mentions")
        if mentions is not None and not isinstance(mentions, (list, tuple)):
            raise SpanAlignmentError(f"entities[{e}].mentions must be a list of [char_start, char_end], got {type(mentions).__name__}")
        for m, span in enumerate(mentions or []):
            if not isinstance(span, (list, tuple)) or len(span) != 2:
                raise SpanAlignmentError(f"entities[{e}].mentions[{m}] must be [char_start, char_end], got {span!r}")
            where = f"entities[{e}].mentions[{m}]"
            start, end = _offset(span[0], where), _offset(span[1], where)
            if not 0 <= start < end <= len(text):
                raise SpanAlignmentError(f"entities[{e}].mentions[{m}] = [{start}, {end}) is not a non-empty span of the {len(text)}-character text")
            spans.append((start, end))
        if not spans:
            raise SpanAlignmentError(f"entities[{e}] has no mentions")
        mention_spans.append(spans)
    cuts = [offset for spans in mention_spans for span in spans for offset in span]

    if sentences is None and sentence_splitter is not None:
        sentences = sentence_splitter(text)
    sentence_spans = _locate(text, sentences, "sentences") if sentences is not None else None
    if words is not None:
        word_spans = _locate(text, words, "words")
    elif sentence_spans is not None:
        word_spans = [w for s, e in sentence_spans for w in tokenize_words(text, s, e, cuts)]
    else:
        word_spans = tokenize_words(text, cuts=cuts)
    if not word_spans:
        raise SpanAlignmentError("the text has no words")

    word_starts = [ws for ws, _ in word_spans]
    word_ends = [we for _, we in word_spans]

    def touched(start, end):  # words overlapping [start, end) (word spans are sorted and disjoint)
        return list(range(bisect.bisect_right(word_ends, start), bisect.bisect_left(word_starts, end)))

    # Word range of every mention (aligned, snapped, or an error).
    mention_words = []
    for e, spans in enumerate(mention_spans):
        ranges = []
        for m, (start, end) in enumerate(spans):
            hit = touched(start, end)
            where = f"entities[{e}].mentions[{m}] = [{start}, {end}) ({text[start:end]!r})"
            if not hit:
                raise SpanAlignmentError(f"{where} covers no word of the text")
            first, last = hit[0], hit[-1]
            snapped = (word_spans[first][0], word_spans[last][1])
            if snapped != (start, end) and not snap_spans:
                raise SpanAlignmentError(
                    f"{where} does not align to word boundaries; the words it touches span {list(snapped)} "
                    f"({text[snapped[0]:snapped[1]]!r}). Fix the span, or pass snap_spans=True to use the words."
                )
            ranges.append((first, last))
        mention_words.append(ranges)

    # Sentence of every word.
    if sentence_spans is not None:
        sentence_starts = [s for s, _ in sentence_spans]
        sentence_of = []
        for i, (ws, we) in enumerate(word_spans):
            k = bisect.bisect_right(sentence_starts, ws) - 1
            if k < 0 or we > sentence_spans[k][1]:
                raise SpanAlignmentError(f"words[{i}] = [{ws}, {we}) ({text[ws:we]!r}) is not inside one of the given sentences")
            sentence_of.append(k)
        for e, ranges in enumerate(mention_words):
            for m, (first, last) in enumerate(ranges):
                if sentence_of[first] != sentence_of[last]:
                    start, end = mention_spans[e][m]
                    raise SpanAlignmentError(f"entities[{e}].mentions[{m}] = [{start}, {end}) ({text[start:end]!r}) crosses a boundary of the given sentences")
        used = sorted(set(sentence_of))
        renumber = {k: n for n, k in enumerate(used)}
        sentence_of = [renumber[k] for k in sentence_of]
    else:
        inside_mention = set()
        for ranges in mention_words:
            for first, last in ranges:
                inside_mention.update(range(first + 1, last + 1))
        starts = [s for s in split_sentences(text, word_spans) if s not in inside_mention]
        sentence_of, current = [], -1
        boundaries = set(starts)
        for i in range(len(word_spans)):
            if i in boundaries:
                current += 1
            sentence_of.append(current)

    first_word_of = {}
    for i, s in enumerate(sentence_of):
        first_word_of.setdefault(s, i)
    num_sentences = max(sentence_of) + 1
    sents = [[] for _ in range(num_sentences)]
    offsets_words = [[] for _ in range(num_sentences)]
    for (ws, we), s in zip(word_spans, sentence_of):
        sents[s].append(text[ws:we])
        offsets_words[s].append([ws, we])

    vertex_set, offsets_mentions = [], []
    for entity, ranges in zip(entities, mention_words):
        mentions, char_spans = [], []
        for first, last in ranges:
            s = sentence_of[first]
            char_start, char_end = word_spans[first][0], word_spans[last][1]
            mentions.append({
                "name": text[char_start:char_end],
                "pos": [first - first_word_of[s], last - first_word_of[s] + 1],
                "sent_id": s,
                "type": entity.get("type", ""),
            })
            char_spans.append([char_start, char_end])
        vertex_set.append(mentions)
        offsets_mentions.append(char_spans)
    return {
        "title": title or "",
        "sents": sents,
        "vertexSet": vertex_set,
        "text": text,
        "offsets": {
            "words": offsets_words,
            "mentions": offsets_mentions,
            "sentences": [[words_[0][0], words_[-1][1]] for words_ in offsets_words],
        },
    }
