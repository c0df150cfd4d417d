"""DREEAM's inference-stage fusion against the plain model, on held-out Re-DocRED documents.

    python benchmarks/bench_dreeam_fusion.py --model outputs/dreeam-minilm

The quickstart split: the first 400 documents of `dev_revised.json` trained the model (and count for Ign-F1), the
last 100 are held out. The fusion threshold is tuned on the first half of them and applied to the second half;
the plain model is scored on the same second half.
"""

import argparse
import json
import time

from transformers import pipeline

from hf_docre import DocREModel, to_docred_predictions
from hf_docre.fusion import evidence_fusion
from hf_docre.metrics import score_docred


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a DREEAM model folder (run_docre.py --method dreeam)")
    parser.add_argument("--data", default="../shared/data/redocred/dev_revised.json")
    parser.add_argument("--train_documents", type=int, default=400)
    args = parser.parse_args()
    with open(args.data) as handle:
        documents = json.load(handle)
    train, held_out = documents[: args.train_documents], documents[args.train_documents :]
    dev, test = held_out[: len(held_out) // 2], held_out[len(held_out) // 2 :]
    model = DocREModel.from_pretrained(args.model).eval()
    extractor = pipeline("doc-relation-extraction", model=model, tokenizer=model.tokenizer)
    plain = score_docred(to_docred_predictions(extractor(test, batch_size=8)), test, train)
    print(f"plain:  F1 {100 * plain['f1']:.2f}  Ign-F1 {100 * plain['ign_f1']:.2f}  Evi-F1 {100 * (plain['evidence_f1'] or 0):.2f}"
          f"  ({len(test)} documents)")
    start = time.time()
    _, threshold = evidence_fusion(model, dev, tune=True)
    fused, _ = evidence_fusion(model, test, threshold=threshold)
    scores = score_docred(fused, test, train)
    print(f"fusion: F1 {100 * scores['f1']:.2f}  Ign-F1 {100 * scores['ign_f1']:.2f}  (threshold {threshold:.3f} tuned on "
          f"{len(dev)} other documents; {time.time() - start:.0f} s for both readings of both halves)")


if __name__ == "__main__":
    main()
