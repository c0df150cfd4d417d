#!/usr/bin/env python
"""What the raw-text front end costs: Re-DocRED documents turned back into plain text, entities found again.

The held-out documents (the quickstart's: the last `--holdout` of `--data`) are detokenised into plain text (words
joined with spaces, none before closing punctuation or after opening brackets), so every gold mention and sentence
has a known character span. Then, per recogniser:

- mention precision / recall, exact spans and overlapping spans, and recall per gold type (exact span);
- the share of found mentions (exact span) whose mapped label is the gold type;
- sentence-boundary agreement of hf_docre's segmentation with the gold sentences (F1 over sentence starts);
- mention grouping: the share of gold entities with 2+ mentions reproduced exactly (same mention set), on gold
  spans (the grouping rules alone, for each rule set) and on the recogniser's spans;
- documents/s of recognition + grouping + segmentation (no relation model);
- end to end, with a trained relation model (`--model`): relation P / R / F1 of text in (recogniser) against gold
  entities in. Predicted entities are mapped to the gold entity with which they share most exact mentions; a
  relation whose head or tail maps to none is wrong.

Recognisers: `rules` (hf_docre's dependency-free `RuleBasedRecognizer`); `minilm-ner`, a MiniLM token classifier
(BIO over DocRED's 6 types) trained here with the stock Trainer on the sentences of the other documents (the
quickstart's 400 training documents; `--ner_epochs`), used through a transformers token-classification pipeline;
spaCy (`--spacy_model`, default `en_core_web_sm`: hf_docre's default recogniser) when it is installed.

    python benchmarks/bench_text_front_end.py --model outputs/atlop-minilm --encoder <MiniLM folder> \\
        --output_dir outputs/front-end
"""

import argparse
import json
import os
import sys
import time
from collections import Counter

NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "}", "%", "'s", "n't", "'", "''", "'re", "'ve", "'ll", "'d", "'m"}
NO_SPACE_AFTER = {"(", "[", "{", "$", "``", "#"}


def detokenize(document):
    """DocRED document -> (text, word char spans per sentence, sentence char spans)."""
    pieces, word_spans, sentence_spans, cursor, previous = [], [], [], 0, None
    for sentence in document["sents"]:
        spans = []
        for word in sentence:
            if previous is not None and word not in NO_SPACE_BEFORE and previous not in NO_SPACE_AFTER:
                pieces.append(" ")
                cursor += 1
            pieces.append(word)
            spans.append((cursor, cursor + len(word)))
            cursor += len(word)
            previous = word
        word_spans.append(spans)
        sentence_spans.append((spans[0][0], spans[-1][1]))
    return "".join(pieces), word_spans, sentence_spans


def gold_mentions(document, word_spans):
    """[(start, end, type, entity index)] of every gold mention."""
    mentions = []
    for e, entity in enumerate(document["vertexSet"]):
        for m in entity:
            sentence = word_spans[m["sent_id"]]
            mentions.append((sentence[m["pos"][0]][0], sentence[m["pos"][1] - 1][1], m["type"], e))
    return mentions


def train_ner(encoder, documents, output_dir, epochs):
    """A MiniLM token classifier over DocRED's types (BIO), trained on the documents' sentences."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification, Trainer, TrainingArguments

    if os.path.exists(os.path.join(output_dir, "config.json")):
        return output_dir
    types = ["PER", "ORG", "LOC", "TIME", "NUM", "MISC"]
    labels = ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
    label_id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    rows = []
    for document in documents:
        tags = [["O"] * len(sentence) for sentence in document["sents"]]
        for entity in document["vertexSet"]:
            for m in entity:
                start, end = m["pos"]
                if all(tag == "O" for tag in tags[m["sent_id"]][start:end]):
                    tags[m["sent_id"]][start:end] = [f"B-{m['type']}"] + [f"I-{m['type']}"] * (end - start - 1)
        for words, sentence_tags in zip(document["sents"], tags):
            encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=256)
            previous, label_ids = None, []
            for w in encoded.word_ids():
                label_ids.append(-100 if w is None or w == previous else label_id[sentence_tags[w]])
                previous = w
            encoded["labels"] = label_ids
            rows.append(dict(encoded))
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(encoder, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_id)
    args = TrainingArguments(output_dir=output_dir, num_train_epochs=epochs, per_device_train_batch_size=16, learning_rate=5e-5,
                             warmup_steps=0.06, save_strategy="no", report_to="none", use_cpu=True, logging_steps=100, seed=0)
    Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorForTokenClassification(tokenizer)).train()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def mention_scores(gold, predicted):
    gold_spans = {(s, e) for s, e, _, _ in gold}
    predicted_spans = {(s["start"], s["end"]) for s in predicted}
    exact = gold_spans & predicted_spans
    overlap_gold = {g for g in gold_spans if any(ps < g[1] and g[0] < pe for ps, pe in predicted_spans)}
    overlap_predicted = {p for p in predicted_spans if any(gs < p[1] and p[0] < ge for gs, ge in gold_spans)}
    return len(exact), len(overlap_gold), len(overlap_predicted), len(gold_spans), len(predicted_spans)


def grouped_right(gold, entities):
    """(multi-mention gold entities reproduced exactly, multi-mention gold entities)."""
    by_entity = {}
    for s, e, _, index in gold:
        by_entity.setdefault(index, set()).add((s, e))
    predicted = [{tuple(m) for m in entity["mentions"]} for entity in entities]
    multi = [spans for spans in by_entity.values() if len(spans) > 1]
    return sum(any(spans == p for p in predicted) for spans in multi), len(multi)


def relation_counts(predicted_entities, relations, gold, document):
    """(correct, predicted, gold) relation counts, predicted entities mapped onto gold ones by shared exact mentions."""
    gold_of_span = {(s, e): index for s, e, _, index in gold}
    mapping = {}
    for p, mentions in enumerate(predicted_entities):
        votes = Counter(gold_of_span[tuple(m)] for m in mentions if tuple(m) in gold_of_span)
        mapping[p] = votes.most_common(1)[0][0] if votes else None
    predicted = {(mapping[r["head"]["index"]], mapping[r["tail"]["index"]], r["relation_id"]) for r in relations}
    truth = {(label["h"], label["t"], label["r"]) for label in document["labels"]}
    return len(predicted & truth), len(predicted), len(truth)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a trained DocRE model folder (end-to-end rows); without it, front-end rows only")
    parser.add_argument("--encoder", help="the MiniLM folder, to train the minilm-ner recogniser (skipped without it)")
    parser.add_argument("--data", default="../shared/data/redocred/dev_revised.json")
    parser.add_argument("--holdout", type=int, default=100)
    parser.add_argument("--ner_epochs", type=float, default=3)
    parser.add_argument("--output_dir", default="outputs/front-end")
    parser.add_argument("--spacy_model", help="the spaCy pipeline to measure (default: the one hf_docre's default recogniser finds)")
    parser.add_argument("--label_noise", type=float, default=0.2,
                        help="share of gold mentions whose label is changed to another name type, as recognisers do")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()

    from transformers import pipeline

    from hf_docre.entities_docre import RuleBasedRecognizer, recognize_entities
    from hf_docre.text_docre import group_entity_spans, sentence_spans

    documents = json.load(open(args.data))
    train, held_out = documents[: -args.holdout], documents[-args.holdout :]
    prepared = []
    for document in held_out:
        text, word_spans, gold_sentences = detokenize(document)
        prepared.append((document, text, gold_sentences, gold_mentions(document, word_spans)))

    recognisers = {"rules": RuleBasedRecognizer()}
    if args.encoder:
        folder = train_ner(args.encoder, train, os.path.join(args.output_dir, "minilm-ner"), args.ner_epochs)
        recognisers["minilm-ner"] = pipeline("token-classification", model=folder, aggregation_strategy="first", device="cpu")
    from hf_docre.entities_docre import installed_spacy_pipelines, resolve_recognizer

    spacy_name = args.spacy_model or (installed_spacy_pipelines() or [None])[0]
    try:
        if spacy_name is None:
            raise ImportError("no spaCy English pipeline is installed")
        recognisers[f"spacy {spacy_name}"] = resolve_recognizer(f"spacy:{spacy_name}")
    except (ImportError, OSError) as error:
        print(f"spacy not measured: {error}", file=sys.stderr)

    # sentence boundaries and the grouping rules alone (gold spans; gold types, and types with recogniser-style
    # noise: a share of the mentions relabelled as another name type, the same draw for every rule set)
    import random

    noise = random.Random(0)
    starts_found = starts_gold = starts_both = 0
    rule_sets = [("exact",), ("name",), ("name", "acronym"), ("name", "acronym", "surname")]
    grouping = {(rules, noised, across): [0, 0] for rules in rule_sets for noised in (False, True) for across in (False, True)}
    for _document, text, gold_sentences, gold in prepared:
        ours = {s for s, _ in sentence_spans(text)}
        theirs = {s for s, _ in gold_sentences}
        starts_found, starts_gold, starts_both = starts_found + len(ours), starts_gold + len(theirs), starts_both + len(ours & theirs)
        spans = [{"start": s, "end": e, "label": t} for s, e, t, _ in gold]
        noised_spans = [dict(span, label=noise.choice([t for t in ("PER", "ORG", "LOC", "MISC") if t != span["label"]]))
                        if span["label"] not in ("TIME", "NUM") and noise.random() < args.label_noise else span for span in spans]
        for (rules, noised, across), counts in grouping.items():
            right, total = grouped_right(gold, group_entity_spans(text, noised_spans if noised else spans, rules, across_labels=across))
            counts[0] += right
            counts[1] += total
    precision, recall = starts_both / starts_found, starts_both / starts_gold
    print(f"\nsentence starts: precision {100 * precision:.1f}, recall {100 * recall:.1f}, F1 {200 * precision * recall / (precision + recall):.1f} "
          f"({starts_gold} gold sentences)")
    print("\n| mention grouping rules (gold spans) | labels | labels must agree | across labels (default) |\n| --- | --- | --- | --- |")
    for rules in rule_sets:
        for noised in (False, True):
            cells = [grouping[(rules, noised, across)] for across in (False, True)]
            print(f"| {' + '.join(rules)} | {f'{100 * args.label_noise:.0f}% relabelled' if noised else 'gold'} | "
                  + " | ".join(f"{right} / {total} = {100 * right / total:.1f}%" for right, total in cells) + " |")

    pipe = pipeline("doc-relation-extraction", model=args.model) if args.model else None
    rows = []
    if pipe is not None:  # the reference: the same model on the gold entities
        counts = [0, 0, 0]
        for document, *_ in prepared:
            predicted = {(r["head"]["index"], r["tail"]["index"], r["relation_id"]) for r in pipe(document)}
            truth = {(label["h"], label["t"], label["r"]) for label in document["labels"]}
            counts = [counts[0] + len(predicted & truth), counts[1] + len(predicted), counts[2] + len(truth)]
        rows.append({"recogniser": "gold entities (DocRED input)", "relations": counts})
    for name, recogniser in recognisers.items():
        totals = Counter()
        per_type = Counter()
        per_type_found = Counter()
        label_right = 0
        relations_counts = [0, 0, 0]
        seconds = 0.0
        for document, text, _gold_sentences, gold in prepared:
            start = time.perf_counter()
            sentences = sentence_spans(text)
            spans = recognize_entities(recogniser, text, sentences)
            entities = group_entity_spans(text, spans)
            seconds += time.perf_counter() - start
            exact, overlap_gold, overlap_predicted, n_gold, n_predicted = mention_scores(gold, spans)
            totals.update(exact=exact, overlap_gold=overlap_gold, overlap_predicted=overlap_predicted, gold=n_gold, predicted=n_predicted)
            label_of = {(s["start"], s["end"]): s["label"] for s in spans}
            for s, e, kind, _ in {(s, e, t, 0) for s, e, t, _ in gold}:
                per_type[kind] += 1
                if (s, e) in label_of:
                    per_type_found[kind] += 1
                    label_right += label_of[(s, e)] == kind
            right, total = grouped_right(gold, entities)
            totals.update(grouped=right, multi=total)
            totals.update(grouped_agree=grouped_right(gold, group_entity_spans(text, spans, across_labels=False))[0])
            if pipe is not None:
                result = pipe({"text": text, "entities": spans, "title": document["title"]}, return_document=True, snap_spans=True)
                predicted_entities = result["document"]["offsets"]["mentions"]
                counts = relation_counts(predicted_entities, result["relations"], gold, document)
                relations_counts = [a + b for a, b in zip(relations_counts, counts)]
        row = {
            "recogniser": name, "documents_per_second": len(prepared) / seconds,
            "exact_precision": totals["exact"] / max(totals["predicted"], 1), "exact_recall": totals["exact"] / totals["gold"],
            "overlap_precision": totals["overlap_predicted"] / max(totals["predicted"], 1), "overlap_recall": totals["overlap_gold"] / totals["gold"],
            "type_recall": {k: per_type_found[k] / per_type[k] for k in sorted(per_type)},
            "label_accuracy": label_right / max(sum(per_type_found.values()), 1),
            "grouped": [totals["grouped"], totals["multi"]], "grouped_labels_agree": totals["grouped_agree"],
        }
        if pipe is not None:
            row["relations"] = relations_counts
        rows.append(row)

    print("\n| recogniser | mentions P / R exact | P / R overlapping | recall per type (exact) | label right "
          "| multi-mention entities grouped right (labels must agree) | docs/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        if "exact_recall" not in row:
            continue
        types = ", ".join(f"{k} {100 * v:.0f}" for k, v in row["type_recall"].items())
        (right, multi), agree = row["grouped"], row["grouped_labels_agree"]
        print(f"| {row['recogniser']} | {100 * row['exact_precision']:.1f} / {100 * row['exact_recall']:.1f} | "
              f"{100 * row['overlap_precision']:.1f} / {100 * row['overlap_recall']:.1f} | {types} | {100 * row['label_accuracy']:.1f} | "
              f"{right} / {multi} = {100 * right / max(multi, 1):.1f}% ({100 * agree / max(multi, 1):.1f}%) | {row['documents_per_second']:.0f} |")
    if pipe is not None:
        print("\n| entities from | relation P | R | F1 |\n| --- | --- | --- | --- |")
        for row in rows:
            correct, predicted, truth = row["relations"]
            p, r = correct / max(predicted, 1), correct / max(truth, 1)
            print(f"| {row['recogniser']} | {100 * p:.2f} | {100 * r:.2f} | {200 * p * r / max(p + r, 1e-9):.2f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
