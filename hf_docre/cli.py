"""`hf-docre predict`: relations for documents in files, without writing Python.

    hf-docre predict --model outputs/atlop-minilm --input notes.txt --output relations.jsonl --html report.html
    hf-docre predict --model org/atlop-roberta --input dev.json --output result.json   # a DocRED submission

Inputs (`--input`, one or more files, by extension):
- `.txt`: the whole file is one document of raw text (entities found by `--recognizer`); its title is the file name.
- `.jsonl`: one document per line: raw text `{"text", "title"?}`, text with entities `{"text", "entities"}`, or a
  DocRED-format document (`title`, `sents`, `vertexSet`).
- `.json`: a DocRED-format list of documents (or one document).

Outputs (`--output`, by extension):
- `.jsonl`: one line per document, `{"title", "source", "relations"}` (the pipeline's relations, with character
  spans for text input); with `--errors skip`, a document that could not be read has `"error"` instead;
- `.json`: the official DocRED submission (`title`, `h_idx`, `t_idx`, `r`, `evidence`); DocRED-format input only.

A bad input stops with an error that names the file, the line (or document number) and the field; the documents
done before it are written first. `--errors skip` reports it and goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_BAD_INPUT = 2


class InputFileError(ValueError):
    """A document that cannot be read, named by its file and line (or position)."""


def read_documents(path):
    """Yields (source, document-or-InputFileError) for every document in `path`: `source` is `FILE`, `FILE:LINE`
    or `FILE:#N` (N-th document, from 1)."""
    extension = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise InputFileError(f"{path}: no such file")
    if extension == ".txt":
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        if not text.strip():
            yield path, InputFileError(f"{path}: the file is empty")
        else:
            yield path, {"text": text, "title": os.path.basename(path)}
    elif extension == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                source = f"{path}:{number}"
                try:
                    document = json.loads(line)
                except json.JSONDecodeError as error:
                    yield source, InputFileError(f"{source}: not valid JSON (column {error.colno}: {error.msg})")
                    continue
                yield source, _checked(document, source)
    elif extension == ".json":
        with open(path, encoding="utf-8") as handle:
            try:
                data = json.load(handle)
            except json.JSONDecodeError as error:
                raise InputFileError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
        for number, document in enumerate(data if isinstance(data, list) else [data], 1):
            source = f"{path}:#{number}"
            yield source, _checked(document, source)
    else:
        raise InputFileError(f"{path}: unknown input type {extension or '(no extension)'!r}; use .txt, .jsonl or a DocRED .json")


def _checked(document, source):
    if isinstance(document, str):
        return {"text": document}
    if not isinstance(document, dict):
        return InputFileError(f"{source}: a document is a JSON object, got {type(document).__name__}")
    if "sents" not in document and "text" not in document:
        return InputFileError(f"{source}: the document has neither `text` (raw text) nor `sents` and `vertexSet` (DocRED format); keys: {sorted(document)}")
    return document


def _recognizer(name, device):
    if name is None or name == "rules" or name.startswith("spacy:"):
        return name
    from transformers import pipeline

    return pipeline("token-classification", model=name, aggregation_strategy="first", device=device)


class FileDocuments:
    """The documents of input files, read lazily (for `corpus.predict_corpus`): counted in one streaming pass, then
    parsed only where a rank wants them. `.jsonl` lines, `.txt` files and DocRED `.json` lists; sources are `FILE`,
    `FILE:LINE` or `FILE:#N`."""

    def __init__(self, paths):
        self.paths = list(paths)
        self.counts = []
        for path in self.paths:
            extension = os.path.splitext(path)[1].lower()
            if not os.path.exists(path):
                raise InputFileError(f"{path}: no such file")
            if extension == ".txt":
                self.counts.append(1)
            elif extension == ".jsonl":
                with open(path, encoding="utf-8") as handle:
                    self.counts.append(sum(1 for line in handle if line.strip()))
            elif extension == ".json":
                self.counts.append(sum(1 for _ in read_documents(path)))
            else:
                raise InputFileError(f"{path}: unknown input type {extension or '(no extension)'!r}; use .txt, .jsonl or a DocRED .json")

    def __len__(self):
        return sum(self.counts)

    def select(self, wanted):
        index = 0
        for path, count in zip(self.paths, self.counts):
            if not any(wanted(i) for i in range(index, index + count)):
                index += count
                continue
            if path.lower().endswith(".jsonl"):
                with open(path, encoding="utf-8") as handle:
                    for number, line in enumerate(handle, 1):
                        if not line.strip():
                            continue
                        if wanted(index):
                            yield (index, *_parsed_line(path, number, line))
                        index += 1
            else:
                for source, document in read_documents(path):
                    if wanted(index):
                        yield index, source, document
                    index += 1

    def fingerprint(self):
        import hashlib

        digest = hashlib.sha256()
        for path in self.paths:
            digest.update(os.path.abspath(path).encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()


def _parsed_line(path, number, line):
    source = f"{path}:{number}"
    try:
        document = json.loads(line)
    except json.JSONDecodeError as error:
        return source, InputFileError(f"{source}: not valid JSON (column {error.colno}: {error.msg})")
    return source, _checked(document, source)


def _device_for_rank(device):
    """Under torchrun with GPUs, each rank takes its own (`cuda` -> `cuda:LOCAL_RANK`)."""
    from .corpus import distributed_world

    _, world_size = distributed_world()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if world_size > 1 and device in (None, "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{local_rank}"
        return "cpu" if device is None else device
    return device


def predict(args) -> int:
    from transformers import pipeline

    from .corpus import distributed_world, predict_corpus
    from .processing_docre import check_output_path

    output_extension = os.path.splitext(args.output)[1].lower()
    if output_extension not in (".jsonl", ".json"):
        raise InputFileError(f"--output {args.output}: write .jsonl (relations per document) or .json (a DocRED submission)")
    if args.batch_size < 1:
        raise InputFileError(f"--batch_size must be at least 1, got {args.batch_size}")
    # Every path the run writes is checked before any document runs.
    try:
        check_output_path(args.output, "--output", inputs=args.input)
        if args.html:
            check_output_path(args.html, "--html", inputs=[*args.input, args.output])
    except ValueError as error:
        raise InputFileError(str(error)) from None
    rank, world_size = distributed_world()
    if args.html and world_size > 1:
        raise InputFileError("--html draws every document on one page: run it as one process (the page is for reading, "
                             "not for corpora)")
    if os.path.exists(args.model) and not os.path.isdir(args.model):
        raise InputFileError(f"--model {args.model}: a file; give the model's folder (config.json, model.safetensors, ...)")
    documents = FileDocuments(args.input)
    if output_extension == ".json":
        not_docred = next((source for _, source, document in documents.select(lambda i: True)
                           if isinstance(document, dict) and "sents" not in document), None)
        if not_docred:
            raise InputFileError(f"--output {args.output}: a DocRED submission names entities by their index in the input's `vertexSet`, "
                                 f"and {not_docred} is text; write .jsonl for text input")

    device = _device_for_rank(args.device)
    dtype = {"auto": "auto", "float32": None, "bfloat16": "bfloat16", "float16": "float16"}[args.dtype]
    try:
        pipe = pipeline("doc-relation-extraction", model=args.model, device=device, trust_remote_code=args.trust_remote_code,
                        **({"dtype": dtype} if dtype is not None else {}))
    except (OSError, ValueError) as error:
        where = "no such folder here, and not a model the Hub serves" if not os.path.exists(args.model) else "not a model folder"
        raise InputFileError(f"--model {args.model}: {where} ({str(error).splitlines()[0][:200]})") from None
    options = {"threshold": args.threshold, "top_k": args.top_k, "return_context": args.context or None,
               "max_sentence_distance": args.max_sentence_distance}
    preprocess, forward, postprocess = pipe._merged_parameters({k: v for k, v in options.items() if v is not None})
    preprocess["recognizer"] = _recognizer(args.recognizer, device)
    fingerprint_params = dict(preprocess, recognizer=args.recognizer)

    try:
        summary = predict_corpus(
            pipe, documents, args.output, batch_size=args.batch_size, bucket_window=args.bucket_window, errors=args.errors,
            overwrite=args.overwrite, preprocess_params=preprocess, forward_params=forward, postprocess_params=postprocess,
            progress=not args.quiet, keep_documents=bool(args.html), input_fingerprint=documents.fingerprint(),
            manifest_options=fingerprint_params)
    except ValueError as error:
        if "holds another run" in str(error):
            raise InputFileError(f"--output {args.output}: {error}") from None
        raise
    if rank != 0:
        return 0 if summary["complete"] else EXIT_BAD_INPUT
    if args.html:
        from .render_docre import render

        render([{"document": d, "relations": r} for d, r in summary["results"]], path=args.html)
        if summary["skipped"]:
            print(f"hf-docre: the page shows the {len(summary['results'])} document(s) run now; {summary['skipped']} were done "
                  "before (--overwrite runs them all)", file=sys.stderr)

    if summary["stopped"] is not None:
        print(f"hf-docre: error: {summary['stopped']}\n(the {summary['written']} document(s) before it were written to {args.output}; "
              "--errors skip goes on past bad documents; a rerun resumes after them)", file=sys.stderr)
        return EXIT_BAD_INPUT
    for failure in summary["failures"]:
        print(f"hf-docre: skipped {failure}", file=sys.stderr)
    if not args.quiet and summary["documents"] == 0 and summary["complete"] and summary["skipped"]:
        pass  # a finished run: the job said so
    elif not args.quiet:
        resumed = f" ({summary['skipped']} done before)" if summary["skipped"] else ""
        print(f"{summary['documents']} document(s){resumed}, {summary['relations']} relation(s) -> {args.output}"
              + (f", {args.html}" if args.html else ""), file=sys.stderr)
    done = summary["documents"] + summary["skipped"]
    return EXIT_BAD_INPUT if summary["failures"] and done == 0 else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-docre", description="Document-level relation extraction from the command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser(
        "convert", help="convert an authors' released checkpoint (ATLOP, DREEAM, KD-DocRE) into a model folder",
        description="Convert a released checkpoint of the authors' research code (a torch.save'd state dict, read with "
                    "weights_only=True) into a folder that from_pretrained, the pipeline and push_to_hub take. "
                    "Every check runs before anything is written.")
    c.add_argument("--source", required=True, choices=("atlop", "dreeam", "kd-docre"), help="the code base that wrote the file")
    c.add_argument("--checkpoint", required=True, help="the released file")
    c.add_argument("--encoder", required=True, help="Hub id or folder of the encoder it was trained from "
                   "(bert-base-cased, roberta-large, ...): its config and tokenizer")
    c.add_argument("--output", required=True, help="a new folder for the model")
    c.add_argument("--relations", default=None, help="the rel2id.json it was trained with (default: DocRED's)")
    c.add_argument("--relation-names", dest="relation_names", default=None,
                   help="{relation id: name} JSON (e.g. DocRED's rel_info.json) for readable output")
    p = commands.add_parser("predict", help="relations for the documents in files", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a saved model folder or a Hub model id")
    p.add_argument("--input", required=True, nargs="+", help=".txt (one raw-text document), .jsonl (one document per line) or DocRED .json")
    p.add_argument("--output", required=True, help=".jsonl (relations per document) or .json (DocRED submission)")
    p.add_argument("--html", help="also write a self-contained HTML page of the documents and relations here")
    p.add_argument("--recognizer", default=None,
                   help='entity recogniser for raw text: "rules" (dependency-free, weak), "spacy:<model>", or a token-classification '
                        "model folder / Hub id; default: spaCy en_core_web_sm (pip install \"hf_docre[text]\")")
    p.add_argument("--threshold", type=float, help="keep relations whose score is above this (default: the model's decision)")
    p.add_argument("--top_k", type=int, help="at most this many relations per document")
    p.add_argument("--max_sentence_distance", type=int,
                   help="score only entity pairs with mentions at most this many sentences apart (long texts with a model "
                        "trained on single documents)")
    p.add_argument("--context", action="store_true", help="add the context words of each relation (and show them in --html)")
    p.add_argument("--batch_size", type=int, default=8, help="documents per model call")
    p.add_argument("--bucket_window", type=int, default=16,
                   help="form batches by length within windows of this many batches (output order is kept); 1: input order")
    p.add_argument("--device", default=None,
                   help='"cpu", "cuda", "cuda:1", ... (default: the pipeline\'s choice; under torchrun each rank takes cuda:LOCAL_RANK)')
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="float32",
                   help="the model's weights and arithmetic (bfloat16 on a GPU halves memory and time)")
    p.add_argument("--overwrite", action="store_true",
                   help="run again even if --output holds a finished run, or one of another model or input")
    p.add_argument("--errors", choices=("raise", "skip"), default="raise", help="stop at a bad document (default) or report it and go on")
    p.add_argument("--trust_remote_code", action="store_true", help="allow the model folder's own code (needed only without hf_docre's version of it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return parser


def convert(args) -> int:
    """`hf-docre convert`: an authors' released checkpoint -> a model folder (see `hf_docre.conversion`)."""
    import shlex

    from .conversion import CheckpointConversionError, convert_checkpoint

    command = "hf-docre convert " + " ".join(shlex.quote(a) for a in args.argv)
    try:
        convert_checkpoint(args.source, args.checkpoint, encoder=args.encoder, output=args.output,
                           relations=args.relations, relation_names=args.relation_names, command=command)
    except (CheckpointConversionError, OSError) as error:
        print(f"hf-docre convert: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "convert":
        args.argv = argv[1:]
        return convert(args)
    try:
        return predict(args)
    except InputFileError as error:
        print(f"hf-docre: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ImportError as error:  # the default recogniser is not installed
        print(f"hf-docre: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
