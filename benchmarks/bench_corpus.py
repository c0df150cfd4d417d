#!/usr/bin/env python
"""Corpus jobs at scale: throughput (length bucketing against input order, 1 against N processes) and memory (peak
RSS against the number of documents).

    python benchmarks/bench_corpus.py --model outputs/atlop-minilm --encoder <MiniLM folder> --output_dir outputs/bench-corpus

1. **Bucketing.** `hf-docre predict` on the Re-DocRED documents (`--data`, 500), batch 8, in one process: batches
   formed by length within windows of 16 batches (the default) against input order (`--bucket_window 1`). The two
   runs alternate `--repeats` times; medians and ranges of documents/s.
2. **Processes.** The same job as 1 process and as `--processes` under torchrun (each with `OMP_NUM_THREADS` =
   cores / processes), wall time from launch to merged output.
3. **Memory.** A synthetic corpus of `--large` short documents (the first sentence of real ones, titles numbered),
   generated in the output folder, against one of `--small`: peak RSS of `hf-docre predict` with a tiny random
   model on MiniLM's tokenizer (the model's size is not what is measured; the corpus's is).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def run(command, env=None):
    """(seconds, peak RSS of the child in MB) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def peak_rss_of(command, env=None):
    """Peak RSS (MB) of one command, measured by a fresh helper process so earlier children do not count."""
    code = ("import resource, subprocess, sys, json; done = subprocess.run(json.loads(sys.argv[1])); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(command)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def predict_command(model, source, output, *extra):
    return [sys.executable, "-m", "hf_docre.cli", "predict", "--model", model, "--input", source, "--output", output,
            "--quiet", "--overwrite", *extra]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained model folder (throughput rows)")
    parser.add_argument("--encoder", required=True, help="the MiniLM folder (its tokenizer, for the memory rows)")
    parser.add_argument("--data", default="../shared/data/redocred/dev_revised.json")
    parser.add_argument("--output_dir", default="outputs/bench-corpus")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=["bucketing", "processes", "memory"])
    args = parser.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    documents = json.load(open(args.data))
    source = os.path.join(args.output_dir, "redocred.jsonl")
    with open(source, "w") as handle:
        handle.writelines(json.dumps(d) + "\n" for d in documents)
    out = os.path.join(args.output_dir, "out.jsonl")
    cores = os.cpu_count() or 1

    if "bucketing" not in args.skip:
        rates = {"by length (windows of 16 batches)": [], "input order": []}
        for _ in range(args.repeats):
            for name, window in (("by length (windows of 16 batches)", "16"), ("input order", "1")):
                seconds, _ = run(predict_command(args.model, source, out, "--batch_size", "8", "--bucket_window", window))
                rates[name].append(len(documents) / seconds)
        base = statistics.median(rates["input order"])
        print(f"\n{len(documents)} Re-DocRED documents, batch 8, 1 process, {args.repeats} alternating repeats (launch and model "
              "loading included)\n\n| batches | docs/s median (range) | ratio |\n| --- | --- | --- |")
        for name, values in rates.items():
            print(f"| {name} | {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f}) | {statistics.median(values) / base:.2f} |")

    if "processes" not in args.skip:
        single, _ = run(predict_command(args.model, source, out, "--batch_size", "8"), env={"OMP_NUM_THREADS": str(cores)})
        reference = open(out, "rb").read()
        launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.processes}", "--master_port=29655",
                    "--no-python", *predict_command(args.model, source, out, "--batch_size", "8")]
        several, _ = run(launcher, env={"OMP_NUM_THREADS": str(max(1, cores // args.processes))})
        same = open(out, "rb").read() == reference
        print(f"\n| processes | seconds | docs/s | output |\n| --- | --- | --- | --- |\n"
              f"| 1 ({cores} threads) | {single:.1f} | {len(documents) / single:.2f} | reference |\n"
              f"| {args.processes} under torchrun ({max(1, cores // args.processes)} thread(s) each) | {several:.1f} | "
              f"{len(documents) / several:.2f} | {'identical bytes' if same else 'DIFFERENT (floating point: thread counts differ)'} |")

    if "memory" not in args.skip:
        import torch
        from transformers import AutoTokenizer, BertConfig

        from hf_docre import DocREModel

        tiny = os.path.join(args.output_dir, "tiny-model")
        if not os.path.exists(os.path.join(tiny, "config.json")):
            torch.manual_seed(0)
            tokenizer = AutoTokenizer.from_pretrained(args.encoder)
            encoder = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=64, max_position_embeddings=512)
            relations = json.load(open(os.path.join(os.path.dirname(args.data), "..", "docred", "rel_info.json")))
            model = DocREModel(__import__("hf_docre").DocREConfig(encoder=encoder, relations=list(relations), emb_size=64, block_size=16))
            model.tokenizer = tokenizer
            model.save_pretrained(tiny)
        short = [{"title": d["title"], "sents": d["sents"][:1],
                  "vertexSet": [e for e in d["vertexSet"] if all(m["sent_id"] == 0 for m in e)]} for d in documents]
        short = [d for d in short if len(d["vertexSet"]) >= 2]
        rows = []
        for n in (args.small, args.large):
            path = os.path.join(args.output_dir, f"synthetic-{n}.jsonl")
            if not os.path.exists(path):
                with open(path, "w") as handle:
                    for k in range(n):
                        document = short[k % len(short)]
                        handle.write(json.dumps({**document, "title": f"{document['title']} #{k}"}) + "\n")
            start = time.perf_counter()
            peak = peak_rss_of(predict_command(tiny, path, os.path.join(args.output_dir, f"synthetic-{n}.out.jsonl"),
                                               "--batch_size", "32", "--top_k", "1"))
            rows.append((n, peak, time.perf_counter() - start))
        print("\n| synthetic documents | peak RSS (MB) | seconds | docs/s | RSS ratio |\n| --- | --- | --- | --- | --- |")
        for n, peak, seconds in rows:
            print(f"| {n:,} | {peak:.0f} | {seconds:.0f} | {n / seconds:.0f} | {peak / rows[0][1]:.2f} |")


if __name__ == "__main__":
    main()
