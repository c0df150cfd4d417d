"""Score perturbed gold predictions on real Re-DocRED documents with the DocRED metric.

    python examples/score_perturbed_gold.py [--data ../shared/data/redocred/dev_revised.json]

The first half of the file plays the training set (for Ign-F1 and the frequent relations), the second half is
scored. Each row drops a share of the gold facts, adds spurious ones and duplicates, and blurs the evidence.
"""

import argparse
import json
import random
from pathlib import Path

from hf_docre.metrics import score_docred

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "redocred" / "dev_revised.json"


def perturb(documents, seed=0, drop=0.25, spurious=2, duplicate=0.1, keep_evidence=0.7, wrong_evidence=0.2):
    """Gold facts as a submission, with `drop` of them missed, about `spurious` wrong facts per document,
    `duplicate` of them repeated, and evidence sentences kept with probability `keep_evidence`."""
    rng = random.Random(seed)
    relations = sorted({label["r"] for document in documents for label in document["labels"]})
    submission = []
    for document in documents:
        for label in document["labels"]:
            if rng.random() < drop:
                continue
            evidence = [s for s in label["evidence"] if rng.random() < keep_evidence]
            if rng.random() < wrong_evidence:
                evidence.append(0)
            submission.append({"title": document["title"], "h_idx": label["h"], "t_idx": label["t"], "r": label["r"], "evidence": evidence})
            if rng.random() < duplicate:
                submission.append(dict(submission[-1]))
        num_entities = len(document["vertexSet"])
        for _ in range(rng.randint(0, 2 * spurious)):
            h, t = rng.sample(range(num_entities), 2)
            submission.append({"title": document["title"], "h_idx": h, "t_idx": t, "r": rng.choice(relations), "evidence": []})
    return submission


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    args = parser.parse_args()
    documents = json.load(open(args.data))
    train, scored = documents[: len(documents) // 2], documents[len(documents) // 2 :]
    print(f"{len(scored)} scored documents, {sum(len(d['labels']) for d in scored)} gold facts; {len(train)} 'train' documents")
    header = f"{'drop':>5} {'spur':>5} | {'P':>6} {'R':>6} {'F1':>6} {'IgnF1':>6} {'EviF1':>6} {'Intra':>6} {'Inter':>6} {'Freq':>6} {'Tail':>6}"
    print(header)
    for drop, spurious in [(0.0, 0), (0.1, 1), (0.25, 2), (0.5, 4), (0.9, 8)]:
        result = score_docred(perturb(scored, seed=0, drop=drop, spurious=spurious), scored, train)
        print(f"{drop:5.2f} {spurious:5d} | " + " ".join(f"{100 * result[k]:6.2f}" for k in (
            "precision", "recall", "f1", "ign_f1", "evidence_f1", "intra_f1", "inter_f1", "frequent_f1", "long_tail_f1")))
    empty = score_docred([], scored, train)
    print(f"empty submission: F1 {empty['f1']:.2f}, Ign-F1 {empty['ign_f1']:.2f} (no crash)")


if __name__ == "__main__":
    main()
