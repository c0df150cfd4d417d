#!/usr/bin/env python
"""Long documents: join k real Re-DocRED documents into one and compare with running them apart.

For k = 1, 2, 4, 8, 16 the held-out documents are joined k at a time (sentences concatenated, `sent_id`s shifted,
entities appended; no relation holds between entities of different source documents) and run through the
`doc-relation-extraction` pipeline. Per k and per `distant_pairs` mode it prints:

- relations returned for the joined documents vs for the same documents run separately (ratio);
- how many of them link entities of different source documents (all wrong by construction);
- F1 of the within-document relations against the gold labels, next to the F1 of the separate run;
- tokens per joined document, seconds, documents/s, and the peak memory of the process (RSS on CPU, allocated
  GPU memory on CUDA), each measured in a fresh process.

    python benchmarks/bench_long_documents.py --model outputs/atlop-minilm \\
        --data ../shared/data/redocred/dev_revised.json --holdout 100

The modes: `zero_context` (what hf_docre did before: distant pairs scored with no context), `entity_context`
(distant pairs scored with the mean of the two entities' own attention as context) and `no_relation` (the default:
distant pairs are not scored).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def worker(args):
    import torch
    from transformers import pipeline

    from hf_docre import DocREModel, to_docred_predictions
    from hf_docre.data import join_documents
    from hf_docre.metrics import score_docred

    torch.manual_seed(0)
    documents = json.load(open(args.data))[-args.holdout :][: args.documents]
    model = DocREModel.from_pretrained(args.model, distant_pairs=args.mode).to(args.device).eval()
    pipe = pipeline("doc-relation-extraction", model=model, device=args.device)
    k = args.k
    groups = [documents[i : i + k] for i in range(0, len(documents) - k + 1, k)]
    joined = [join_documents(group) for group in groups]
    featurizer = pipe.featurizer
    tokens = [len(featurizer(document, with_labels=False)["input_ids"]) for document, _ in joined]
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.inference_mode():
        options = {} if args.distance in (None, "none") else {"max_sentence_distance": int(args.distance)}
        outputs = pipe([document for document, _ in joined], batch_size=1 if k > 1 else 4, **options)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start

    within = [[] for _ in documents]
    relations = across = 0
    for g, (relations_of_group, (_, source)) in enumerate(zip(outputs, joined)):
        for record in to_docred_predictions([relations_of_group])[0]:
            relations += 1
            (hd, he), (td, te) = source[record["h_idx"]], source[record["t_idx"]]
            if hd != td:
                across += 1
            else:
                within[g * k + hd].append({"h_idx": he, "t_idx": te, "r": record["r"]})
    used = documents[: len(groups) * k]
    scores = score_docred(within[: len(used)], used)
    # Within-document F1 on the (joined or single) documents longer than the encoder's window only: the documents a
    # model trained on single short documents meets in long-text use. Gold relations never cross a seam.
    window = model.config.effective_window_size
    long_groups = [g for g in range(len(groups)) if tokens[g] > window]
    long_sources = [g * k + d for g in long_groups for d in range(k)]
    long_scores = score_docred([within[i] for i in long_sources], [used[i] for i in long_sources]) if long_sources else None
    result = {
        "mode": args.mode, "distance": args.distance or "none", "k": k, "documents": len(used), "relations": relations, "across": across,
        "f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"],
        "tokens": sum(tokens) / len(tokens), "max_tokens": max(tokens), "seconds": seconds,
        "window": window, "long_documents": len(long_groups), "long_f1": None if long_scores is None else long_scores["f1"],
    }
    if args.device.startswith("cuda"):
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT" + json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained DocRE model folder")
    parser.add_argument("--data", default="../shared/data/redocred/dev_revised.json")
    parser.add_argument("--holdout", type=int, default=100, help="use the last N documents (the quickstart's held-out split)")
    parser.add_argument("--documents", type=int, default=96, help="how many of them (a multiple of every k)")
    parser.add_argument("--ks", default="1,2,4,8,16")
    parser.add_argument("--modes", default="zero_context,entity_context,no_relation")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max_sentence_distances", default="none",
                        help="pipeline max_sentence_distance values to compare, e.g. none,1,2,3 (none: every pair)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--distance", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode is not None:
        return worker(args)

    rows = []
    runs = [(mode, distance, int(k)) for mode in args.modes.split(",") for distance in args.max_sentence_distances.split(",")
            for k in args.ks.split(",")]
    for mode, distance, k in runs:
        command = [sys.executable, __file__, "--model", args.model, "--data", args.data, "--holdout", str(args.holdout),
                   "--documents", str(args.documents), "--device", args.device, "--mode", mode, "--k", str(k),
                   "--distance", distance]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            process = subprocess.Popen(command, stdout=out, stderr=err, text=True,
                                       env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS (KiB on Linux)
            out.seek(0), err.seek(0)
            stdout, stderr = out.read(), err.read()
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"mode={mode} k={k} failed:\n{stderr[-3000:]}")
        row = json.loads(stdout.split("RESULT", 1)[1])
        row["peak_rss_mb"] = usage.ru_maxrss / 1024
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    _print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def _print_table(rows):
    separate = {(row["mode"], row.get("distance", "none")): row for row in rows if row["k"] == 1}
    print("| distant_pairs | max sentence distance | k | tokens/doc (max) | relations joined / separate | across documents | "
          "F1 joined (separate) | recall | documents over the window: count, F1 | docs/s | peak memory MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        base = separate.get((row["mode"], row.get("distance", "none")), row)
        ratio = row["relations"] / max(base["relations"], 1)
        share = row["across"] / max(row["relations"], 1)
        memory = row.get("peak_gpu_mb", row.get("peak_rss_mb"))
        memory = f"{memory:.0f}" if isinstance(memory, float) else memory
        long_f1 = "-" if row.get("long_f1") is None else f"{100 * row['long_f1']:.2f}"
        print(
            f"| {row['mode']} | {row.get('distance', 'none')} | {row['k']} | {row['tokens']:.0f} ({row['max_tokens']}) | "
            f"{row['relations']} / {base['relations']} = {ratio:.2f}x | {row['across']} ({100 * share:.1f}%) | "
            f"{100 * row['f1']:.2f} ({100 * base['f1']:.2f}) | {100 * row['recall']:.2f} | "
            f"{row.get('long_documents', '-')}, {long_f1} | "
            f"{row['documents'] / row['seconds']:.1f} | {memory} |"
        )


if __name__ == "__main__":
    main()
