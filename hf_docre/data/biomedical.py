"""CDR and GDA in the preprocessed format ATLOP uses (from the EoG preprocessing), read into DocRED format.

Each line is one document: `pmid <TAB> text <TAB> pair records...`. The text has sentences separated by `|` and
tokens by spaces. Each pair record has 17 tab-separated fields; the ones read here are
0 relation (`1:CID:2`, `1:GDA:2`, `1:NR:2` = no relation, `not_include` = not a candidate pair),
1 direction (`L2R`: argument 1 is the head; `R2L`: argument 2 is),
5/11 argument ids, 7/13 argument types, 8/14 and 9/15 the `:`-joined document-level token starts and ends of the
arguments' mentions. Entities are numbered in order of first appearance among the candidate pairs (as ATLOP does);
positive pairs become labels with the relation name in the middle of the code (`CID`, `GDA`). Every candidate pair
(positive or `NR`) is kept, in file order, as the document's `candidate_pairs`: the only pairs a model scores.
"""

FIELDS_PER_PAIR = 17


def _mentions(starts, ends, entity_type, sentence_of, tokens):
    mentions = []
    for start, end in zip(map(int, starts.split(":")), map(int, ends.split(":"))):
        sent_id, offset = sentence_of[start]
        mentions.append({
            "name": " ".join(tokens[start:end]),
            "pos": [start - offset, end - offset],
            "sent_id": sent_id,
            "type": entity_type,
        })
    return mentions


def parse_pubtator_line(line, line_number=None):
    """One line of a CDR/GDA `.data` file -> a DocRED-format document (title = PMID)."""
    fields = line.rstrip("\n").split("\t")
    if len(fields) < 2 or (len(fields) - 2) % FIELDS_PER_PAIR:
        raise ValueError(
            f"line {line_number}: expected 'pmid<TAB>text' then {FIELDS_PER_PAIR} fields per pair, got {len(fields)} fields"
        )
    pmid, text = fields[0], fields[1]
    sents = [sentence.split(" ") for sentence in text.split("|")]
    tokens, sentence_of = [], {}
    for sent_id, sentence in enumerate(sents):
        for offset_in_sentence, token in enumerate(sentence):
            sentence_of[len(tokens)] = (sent_id, len(tokens) - offset_in_sentence)
            tokens.append(token)

    entity_index, vertex_set, labels, candidates = {}, [], [], []
    for k in range(2, len(fields), FIELDS_PER_PAIR):
        pair = fields[k : k + FIELDS_PER_PAIR]
        if pair[0] == "not_include":
            continue
        first = (pair[5], pair[7], pair[8], pair[9])
        second = (pair[11], pair[13], pair[14], pair[15])
        head, tail = (first, second) if pair[1] == "L2R" else (second, first)
        ids = []
        for entity_id, entity_type, starts, ends in (head, tail):
            if entity_id not in entity_index:
                entity_index[entity_id] = len(vertex_set)
                vertex_set.append(_mentions(starts, ends, entity_type, sentence_of, tokens))
            ids.append(entity_index[entity_id])
        if ids[0] != ids[1] and ids not in candidates:
            candidates.append(ids)
        relation = pair[0].split(":")[1] if pair[0].count(":") == 2 else pair[0]
        if relation != "NR":
            labels.append({"h": ids[0], "t": ids[1], "r": relation, "evidence": []})
    return {"title": pmid, "sents": sents, "vertexSet": vertex_set, "labels": labels, "candidate_pairs": candidates}


def read_pubtator_file(path, on_error=None):
    """Every document of a CDR/GDA `.data` file (a PMID repeated on later lines is read once, as ATLOP does).

    A malformed line raises `ValueError` naming the file and the line, unless `on_error(message, line_number)` is
    given: its return value then stands in the list for that line (the builder marks it as a bad document).
    """
    documents, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            pmid = line.split("\t", 1)[0]
            if pmid in seen:
                continue
            seen.add(pmid)
            try:
                documents.append(parse_pubtator_line(line, line_number))
            except (ValueError, KeyError, IndexError) as error:
                message = f"{path}, line {line_number}: malformed CDR/GDA line ({type(error).__name__}: {error})"
                if on_error is None:
                    raise ValueError(message) from error
                documents.append(on_error(message, line_number))
    return documents
