#!/usr/bin/env python
"""DSDocRE on a stand-in for distant supervision (Re-DocRED documents with corrupted labels), mirroring the
paper's Table 1 rows with one encoder, the same seeds and the same fine-tuning budget for every row:

- BERT: `method="dsdocre"` fine-tuned from the encoder, scoring every pair;
- +D: the same on the ranker's candidate pairs (top min(2 N_entities, 60));
- +D+P: the same from the encoder pre-trained on the distant documents whose trusted labels the ranker chose.

The 500 documents of `--data` are split (seeded) into `--annotated` clean documents (ranker training, fine-tuning),
`--distant` documents whose labels are made distant-like (`hf_docre.denoising.distant_stand_in`: 30% of facts
dropped, false facts added as 60% of the rest) and the remaining evaluation documents. Also printed: the precision
of the distant labels against the clean copy before and after denoising (all labels vs the labels on the ranker's
top k_d pairs), and the pre-training throughput and peak memory.

    python benchmarks/bench_dsdocre_stand_in.py --encoder <MiniLM folder> --output_dir /tmp/dsdocre-bench
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(command, log):
    start = time.perf_counter()
    with open(log, "w") as f:
        result = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, command))}\nsee {log}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--data", default=str(REPO / ".." / "shared" / "data" / "redocred" / "dev_revised.json"))
    parser.add_argument("--relations", default=str(REPO / ".." / "shared" / "data" / "docred" / "rel_info.json"))
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--annotated", type=int, default=100)
    parser.add_argument("--distant", type=int, default=300)
    parser.add_argument("--epochs", type=float, default=10, help="Fine-tuning epochs (the released code: 30).")
    parser.add_argument("--learning_rate", type=float, default=5e-5, help="Fine-tuning encoder learning rate.")
    parser.add_argument("--head_learning_rate", type=float, default=1e-4, help="Fine-tuning head learning rate.")
    parser.add_argument("--ranker_epochs", type=float, default=4)
    parser.add_argument("--pretrain_steps", type=int, default=60)
    parser.add_argument("--trusted_pairs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from hf_docre.denoising import distant_stand_in, load_pair_scores, trusted_pairs

    documents = json.load(open(args.data))
    random.Random(args.seed).shuffle(documents)
    annotated = documents[: args.annotated]
    clean_distant = documents[args.annotated : args.annotated + args.distant]
    evaluation = documents[args.annotated + args.distant :]
    distant = distant_stand_in(clean_distant, seed=args.seed)
    for name, docs in (("annotated", annotated), ("distant", distant), ("dev", evaluation)):
        (out / f"{name}.json").write_text(json.dumps(docs))

    python = sys.executable
    stages = out / "dsdocre"
    common = ["--model_name_or_path", args.encoder, "--relations_file", args.relations, "--train_file", str(out / "annotated.json"),
              "--distant_file", str(out / "distant.json"), "--validation_file", str(out / "dev.json"), "--output_dir", str(stages),
              "--use_cpu", "--seed", str(args.seed), "--trusted_pairs", str(args.trusted_pairs), "--ranker_epochs", str(args.ranker_epochs)]
    seconds = {}
    for stage in ("ranker", "score"):
        seconds[stage] = run([python, str(REPO / "examples" / "run_dsdocre.py"), *common, "--stage", stage], out / f"{stage}.log")
    # Pre-training in its own process, for its throughput and peak memory.
    command = [python, str(REPO / "examples" / "run_dsdocre.py"), *common, "--stage", "pretrain", "--pretrain_steps",
               str(args.pretrain_steps), "--gradient_accumulation_steps", "4"]
    ran = not (stages / "pretrain" / "model.safetensors").exists()
    with open(out / "pretrain.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS (KiB on Linux)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"pre-training failed: see {out / 'pretrain.log'}")
    peak_mb = usage.ru_maxrss / 1024 if ran else float("nan")  # a reused model: not measured in this run
    seconds["pretrain"] = json.loads((stages / "pretrain" / "pretrain_results.json").read_text())["train_runtime"]
    pretrain_documents = args.pretrain_steps * 4 * 2 * 2  # steps x accumulation x pairs x 2 documents

    # Precision of the distant labels against the clean copy, before and after denoising.
    true = {(d, l["h"], l["t"], l["r"]) for d, doc in enumerate(clean_distant) for l in doc["labels"]}
    noisy = [(d, l["h"], l["t"], l["r"]) for d, doc in enumerate(distant) for l in doc["labels"]]
    trusted = trusted_pairs(load_pair_scores(stages / "scores" / "distant"), args.trusted_pairs)
    kept = [x for x in noisy if (x[1], x[2]) in trusted[x[0]]]
    precision_before = sum(x in true for x in noisy) / len(noisy)
    precision_after = sum(x in true for x in kept) / max(len(kept), 1)

    finetune = ["--relations_file", args.relations, "--method", "dsdocre", "--train_file", str(out / "annotated.json"),
                "--validation_file", str(out / "dev.json"), "--do_train", "--do_eval", "--num_train_epochs", str(args.epochs),
                "--per_device_train_batch_size", "4", "--learning_rate", str(args.learning_rate),
                "--head_learning_rate", str(args.head_learning_rate),
                "--lr_scheduler_type", "linear", "--warmup_steps", "0.06", "--seed", str(args.seed), "--use_cpu",
                "--report_to", "none", "--save_strategy", "no", "--logging_steps", "25"]
    rows = {}
    for name, model, candidates in (("BERT", args.encoder, None), ("+D", args.encoder, stages / "candidates"),
                                    ("+D+P", str(stages / "pretrain"), stages / "candidates")):
        folder = out / f"finetune-{name.strip('+').replace('+', '-') or 'bert'}"
        extra = ["--candidate_pairs_dir", str(candidates)] if candidates else []
        seconds[name] = run([python, str(REPO / "examples" / "run_docre.py"), "--model_name_or_path", model, *finetune, *extra,
                             "--output_dir", str(folder)], out / f"{folder.name}.log")
        rows[name] = json.loads((folder / "eval_results.json").read_text())

    report = {"precision_before": precision_before, "precision_after": precision_after, "distant_labels": len(noisy),
              "trusted_labels": len(kept), "pretrain_seconds": seconds["pretrain"], "pretrain_documents": pretrain_documents,
              "pretrain_peak_rss_mb": peak_mb, "seconds": seconds,
              "rows": {name: {k: row[k] for k in ("eval_f1", "eval_ign_f1", "eval_precision", "eval_recall")} for name, row in rows.items()}}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print("| model | F1 | Ign-F1 | P | R | fine-tuning |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in rows.items():
        print(f"| {name} | {100 * row['eval_f1']:.2f} | {100 * row['eval_ign_f1']:.2f} | {100 * row['eval_precision']:.1f} | "
              f"{100 * row['eval_recall']:.1f} | {seconds[name] / 60:.1f} min |")
    print(f"\ndistant labels: precision {100 * precision_before:.1f}% ({len(noisy)} labels) -> trusted top-{args.trusted_pairs}: "
          f"{100 * precision_after:.1f}% ({len(kept)} labels)")
    print(f"pre-training: {pretrain_documents} document encodings in {seconds['pretrain']:.0f} s "
          f"({pretrain_documents / seconds['pretrain']:.1f} documents/s, forward and backward), peak RSS {peak_mb:.0f} MB"
          + (" (not measured: the pre-trained model was reused, delete it to measure)" if not ran else ""))


if __name__ == "__main__":
    main()
