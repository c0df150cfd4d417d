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


def predict(args) -> int:
    from transformers import pipeline

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
    if os.path.exists(args.model) and not os.path.isdir(args.model):
        raise InputFileError(f"--model {args.model}: a file; give the model's folder (config.json, model.safetensors, ...)")
    documents = [item for path in args.input for item in read_documents(path)]
    if output_extension == ".json":
        not_docred = [source for source, document in documents if isinstance(document, dict) and "sents" not in document]
        if not_docred:
            raise InputFileError(f"--output {args.output}: a DocRED submission names entities by their index in the input's `vertexSet`, "
                                 f"and {not_docred[0]} is text; write .jsonl for text input")

    try:
        pipe = pipeline("doc-relation-extraction", model=args.model, device=args.device, trust_remote_code=args.trust_remote_code)
    except (OSError, ValueError) as error:
        where = "no such folder here, and not a model the Hub serves" if not os.path.exists(args.model) else "not a model folder"
        raise InputFileError(f"--model {args.model}: {where} ({str(error).splitlines()[0][:200]})") from None
    options = {"threshold": args.threshold, "top_k": args.top_k, "return_context": args.context or None}
    preprocess, forward, postprocess = pipe._merged_parameters({k: v for k, v in options.items() if v is not None})
    preprocess["recognizer"] = _recognizer(args.recognizer, args.device)
    postprocess["return_document"] = True

    results, failures = [], []  # results, in input order: [source, document, relations or None, error or None]

    def flush(chunk, slots):
        for slot, result in zip(slots, pipe.run_preprocessed(chunk, forward, postprocess)):
            slot[1], slot[2] = result["document"], result["relations"]

    written = 0
    stream = open(args.output, "w", encoding="utf-8") if output_extension == ".jsonl" else None

    def write_done():
        """Append the finished results, in input order, to the .jsonl output (as the run goes)."""
        nonlocal written
        while stream is not None and written < len(results) and (results[written][2] is not None or results[written][3] is not None):
            source, document, relations, error = results[written]
            record = {"title": (document or {}).get("title", ""), "source": source}
            record.update({"error": error} if error is not None else {"relations": relations})
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += 1
        if stream is not None:
            stream.flush()

    try:
        stopped = _run_documents(documents, args, pipe, preprocess, forward, postprocess, results, failures, flush, write_done)
    except BaseException:
        # Interrupted (Ctrl-C, out of memory, ...): what was done is kept.
        if stream is not None:
            write_done()
            stream.close()
        else:
            _write_submission(args.output, results)
        raise
    if stream is not None:
        write_done()
        stream.close()
    else:
        _write_submission(args.output, results)
    if args.html:
        from .render_docre import render

        render([{"document": d, "relations": r} for _, d, r, error in results if error is None], path=args.html)

    done = sum(error is None for *_, error in results)
    if stopped is not None:
        print(f"hf-docre: error: {stopped}\n(the {done} document(s) before it were written to {args.output}; "
              "--errors skip goes on past bad documents)", file=sys.stderr)
        return EXIT_BAD_INPUT
    for failure in failures:
        print(f"hf-docre: skipped {failure}", file=sys.stderr)
    if not args.quiet:
        relations = sum(len(r) for *_, r, error in results if error is None)
        print(f"{done} document(s), {relations} relation(s) -> {args.output}" + (f", {args.html}" if args.html else ""), file=sys.stderr)
    return EXIT_BAD_INPUT if failures and done == 0 else 0


def _write_submission(path, results):
    from .metrics import to_official
    from .pipeline_docre import to_docred_predictions

    done = [(document, relations) for _, document, relations, error in results if error is None and relations is not None]
    records = to_official(to_docred_predictions([r for _, r in done]), [d for d, _ in done]) if done else []
    with open(path, "w", encoding="utf-8") as handle:
        json.dump([{"title": p["title"], "h_idx": int(p["h_idx"]), "t_idx": int(p["t_idx"]), "r": p["r"],
                    "evidence": [int(s) for s in p.get("evidence") or []]} for p in records], handle, ensure_ascii=False)


def _run_documents(documents, args, pipe, preprocess, forward, postprocess, results, failures, flush, write_done):
    """Run the documents in batches; fills `results` and `failures`. Returns the error that stopped the run, or None."""
    from transformers.utils.logging import tqdm

    chunk, slots, stopped = [], [], None
    for source, document in tqdm(documents, desc="documents", unit="doc", disable=args.quiet):
        error = document if isinstance(document, Exception) else None
        if error is None:
            try:
                chunk.append(pipe.preprocess(document, **preprocess))
                slots.append([source, None, None, None])
                results.append(slots[-1])
            except (ValueError, KeyError, TypeError) as caught:
                error = InputFileError(f"{source}: {caught}")
        if error is not None:
            failures.append(error)
            if args.errors == "raise":
                stopped = error
                break
            results.append([source, document if isinstance(document, dict) else None, None, str(error)])
        if len(chunk) == args.batch_size:
            flush(chunk, slots)
            chunk, slots = [], []
            write_done()
        elif error is not None:
            write_done()
    if chunk:
        flush(chunk, slots)
    return stopped


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
    p.add_argument("--context", action="store_true", help="add the context words of each relation (and show them in --html)")
    p.add_argument("--batch_size", type=int, default=8, help="documents per model call")
    p.add_argument("--device", default=None, help='"cpu", "cuda", "cuda:1", ... (default: the pipeline\'s choice)')
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
