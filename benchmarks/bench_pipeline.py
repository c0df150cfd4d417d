"""Throughput of the whole path a user runs, as ratios measured in one run.

    python benchmarks/bench_pipeline.py [--encoder minilm|bert-base|PATH] [--num-docs 64] [--batch-size 8]

Prints, on the same Re-DocRED documents:
  * preprocessing (DocREFeaturizer) in documents/s on one core, from a cold and a warm word-piece cache, and
    against one tokenizer call per document; and as a fraction of the encoder's inference time;
  * inference: the model on collated batches vs `pipeline("doc-relation-extraction")` over a `datasets.Dataset`
    of the same documents (with decoding and output dictionaries), and the ratio of the two;
  * training (forward + backward + AdamW step) vs the encoder alone as the model runs it (length-bucketed sub-batches)
    doing the same (mean of its last hidden state as the loss), in documents/s and as a ratio.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import DATA, build_model, timed  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num-docs", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-batch-size", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)

    from datasets import Dataset
    from transformers import pipeline

    from hf_docre import DocREDataCollator, DocREFeaturizer

    model = build_model(args.encoder, "cpu").eval()
    documents = json.load(open(DATA / "redocred" / "dev_revised.json"))
    featurizer = DocREFeaturizer.from_model(model)
    window = model.config.effective_window_size
    documents = [d for d, f in zip(documents, featurizer.featurize(documents)) if len(f["input_ids"]) <= window][: args.num_docs]
    docs = len(documents)

    # Preprocessing: all 500 documents on one core, median (min-max) of five passes. "cold": a new featurizer each
    # pass, so every distinct word is tokenized once inside the timing; "warm": the same featurizer again (word
    # pieces cached, as when another split or the pipeline shares the vocabulary); "per-document call": one
    # tokenizer call per document (`cache_words=False`), what the featurizer did before the cache.
    everything = json.load(open(DATA / "redocred" / "dev_revised.json"))
    distinct = len({word for document in everything for sentence in document["sents"] for word in sentence})

    def rates(make, warm=False):
        found = []
        for _ in range(5):
            featurizer_ = make()
            if warm:
                featurizer_.featurize(everything)
            start = time.perf_counter()
            featurizer_.featurize(everything)
            found.append(len(everything) / (time.perf_counter() - start))
        return statistics.median(found), min(found), max(found)

    cold = rates(lambda: DocREFeaturizer.from_model(model))
    warm = rates(lambda: DocREFeaturizer.from_model(model), warm=True)
    direct = rates(lambda: DocREFeaturizer.from_model(model, cache_words=False))
    print(f"encoder={args.encoder} threads={args.threads} documents={docs} batch={args.batch_size}")
    print(f"preprocessing, 500 documents ({distinct} distinct words), one core, docs/s median (min-max) of 5 passes:")
    for name, (median, low, high) in (("cold cache", cold), ("warm cache", warm), ("one tokenizer call per document", direct)):
        print(f"  {name:32s} {median:6.0f} ({low:.0f}-{high:.0f})")
    cold = cold[0]

    collator = DocREDataCollator.from_model(model)
    features = featurizer.featurize(documents)
    batches = [collator(features[i : i + args.batch_size]) for i in range(0, docs, args.batch_size)]
    inputs = [{k: v for k, v in b.items() if k != "labels"} for b in batches]
    with torch.inference_mode():
        model_seconds = timed(lambda b: model.decode(model(**b).logits), inputs, "cpu")
    extract = pipeline("doc-relation-extraction", model=model)
    dataset = Dataset.from_list(documents)
    extract(dataset.select(range(args.batch_size)), batch_size=args.batch_size)  # warm-up
    pipeline_seconds = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        extract(dataset, batch_size=args.batch_size)
        pipeline_seconds = min(pipeline_seconds, time.perf_counter() - start)
    def bucketed_encoder(batch):
        """The encoder as the model runs it (length-bucketed sub-batches, windows), without attention rows: the
        baseline. A padded batch would be slower than what the model really runs and flatter the head's share."""
        return model.encode(batch["input_ids"], batch["attention_mask"], batch["mention_index"], need_attention=False).sequence_output

    with torch.inference_mode():
        encoder_seconds = timed(lambda b: bucketed_encoder(b), inputs, "cpu")
    print(f"inference, encoder alone (as hf_docre runs it: length-bucketed sub-batches): {docs / encoder_seconds:6.2f} docs/s; "
          f"cold preprocessing costs {docs / cold / encoder_seconds:.1%} of the encoder's time")
    print(f"inference, model on collated batches: {docs / model_seconds:6.2f} docs/s")
    print(f"inference, pipeline over a Dataset:   {docs / pipeline_seconds:6.2f} docs/s "
          f"({pipeline_seconds / model_seconds - 1:+.1%} time vs the model; includes featurizing and outputs)")

    train_batches = [collator(features[i : i + args.train_batch_size]) for i in range(0, docs, args.train_batch_size)]
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def full_step(batch):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def encoder_step(batch):
        bucketed_encoder(batch).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    encoder_seconds = timed(encoder_step, train_batches, "cpu", repeats=1)
    full_seconds = timed(full_step, train_batches, "cpu", repeats=1)
    print(f"training, encoder alone (bucketed): {docs / encoder_seconds:6.2f} docs/s; full model: {docs / full_seconds:6.2f} docs/s "
          f"(x{full_seconds / encoder_seconds:.2f} the encoder's time)")


if __name__ == "__main__":
    main()
