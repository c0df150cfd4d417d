"""A `datasets` builder for DocRED-format data (datasets 5 has no loading scripts: use the class directly).

    from hf_docre.data import DocREDBuilder
    builder = DocREDBuilder(config_name="redocred", data_files={"dev": "dev_revised.json"}, cache_dir="cache")
    builder.download_and_prepare()
    dev = builder.as_dataset(split="dev")

or simply `hf_docre.data.load_docred("redocred", data_files=...)`. Without `data_files`, the official files are
downloaded (DocRED from the authors' Google Drive, Re-DocRED from its GitHub repository). CDR and GDA are read from
their preprocessed `.data` files (see `biomedical.py`), which have no stable download address: pass `data_files`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field

import datasets

from ..processing_docre import DocREInputError, validate_document

_DRIVE = "https://drive.google.com/uc?export=download&id="
_REDOCRED = "https://raw.githubusercontent.com/tonytan48/Re-DocRED/main/data/"

DOCRED_URLS = {
    "train_annotated": _DRIVE + "1NN33RzyETbanw4Dg2sRrhckhWpzuBQS9",
    "train_distant": _DRIVE + "1fDmfUUo5G7gfaoqWWvK81u08m71TK2g7",
    "dev": _DRIVE + "1AHUm1-_V9GCtGuDcc8XrMUCJE8B-HHoL",
    "test": _DRIVE + "1lAVDcD94Sigx7gR3jTfStI66o86cflum",
}
DOCRED_REL_INFO_URL = _DRIVE + "1y9A0zKrvETc1ddUFuFhBg3Xfr7FEL4dW"
REDOCRED_URLS = {split: _REDOCRED + f"{split}_revised.json" for split in ("train", "dev", "test")}

BIOMEDICAL_RELATIONS = {"cdr": {"CID": "chemical-induced disease"}, "gda": {"GDA": "gene-disease association"}}

MENTION = {
    "name": datasets.Value("string"),
    "pos": datasets.List(datasets.Value("int32")),
    "sent_id": datasets.Value("int32"),
    "type": datasets.Value("string"),
    # Re-DocRED's extra mention fields; None where a corpus does not have them.
    "global_pos": datasets.List(datasets.Value("int32")),
    "index": datasets.Value("string"),
}
LABEL = {
    "h": datasets.Value("int32"),
    "t": datasets.Value("int32"),
    "r": datasets.Value("string"),
    "evidence": datasets.List(datasets.Value("int32")),
}
FEATURES = datasets.Features(
    {
        "title": datasets.Value("string"),
        "sents": datasets.List(datasets.List(datasets.Value("string"))),
        "vertexSet": datasets.List(datasets.List(MENTION)),
        "labels": datasets.List(LABEL),  # None in splits without labels (DocRED's test set)
        # The (head, tail) pairs a model scores, where a corpus restricts them (CDR/GDA); None = all ordered pairs.
        "candidate_pairs": datasets.List(datasets.List(datasets.Value("int32"))),
    }
)
_OPTIONAL_MENTION_FIELDS = ("global_pos", "index")


def to_docred_json(row: dict) -> dict:
    """A dataset row back to the DocRED JSON document it came from (absent optional fields dropped)."""
    document = {
        "title": row["title"],
        "sents": row["sents"],
        "vertexSet": [
            [{k: v for k, v in mention.items() if not (k in _OPTIONAL_MENTION_FIELDS and v is None)} for mention in entity]
            for entity in row["vertexSet"]
        ],
    }
    if row.get("labels") is not None:
        document["labels"] = row["labels"]
    if row.get("candidate_pairs") is not None:
        document["candidate_pairs"] = row["candidate_pairs"]
    return document


@dataclass
class DocREDBuilderConfig(datasets.BuilderConfig):
    """Args:
        source: `"docred"` (official JSON files), `"redocred"`, `"pubtator"` (CDR/GDA `.data` files) or `"json"`.
        urls: split -> download address of the official files (overridden by `data_files`).
        relation_names: relation id -> name; for DocRED and Re-DocRED the `rel_info.json` map.
        rel_info_url: where to download `rel_info.json` when `relation_names` is empty.
        validation: `"strict"` raises on the first bad document (title, field, index); `"lenient"` skips bad
            documents, keeps every good one and warns with the count and the reasons.
    """

    source: str = "json"
    urls: dict = field(default_factory=dict)
    relation_names: dict = field(default_factory=dict)
    rel_info_url: str | None = None
    validation: str = "strict"

    def __post_init__(self):
        super().__post_init__()
        if self.validation not in ("strict", "lenient"):
            raise ValueError(f"validation must be 'strict' or 'lenient', got {self.validation!r}")


class DocREDBuilder(datasets.GeneratorBasedBuilder):
    """DocRED, Re-DocRED, CDR, GDA, or any DocRED-format JSON (`config_name="json"` with `data_files`)."""

    BUILDER_CONFIG_CLASS = DocREDBuilderConfig
    BUILDER_CONFIGS = [
        DocREDBuilderConfig(name="docred", source="docred", urls=DOCRED_URLS, rel_info_url=DOCRED_REL_INFO_URL,
                            description="DocRED (Yao et al. 2019): train_annotated, train_distant, dev, test"),
        DocREDBuilderConfig(name="redocred", source="docred", urls=REDOCRED_URLS, rel_info_url=DOCRED_REL_INFO_URL,
                            description="Re-DocRED (Tan et al. 2022): the revised train, dev and test sets"),
        DocREDBuilderConfig(name="cdr", source="pubtator", relation_names=BIOMEDICAL_RELATIONS["cdr"],
                            description="BioCreative V CDR in ATLOP's preprocessed format (pass data_files)"),
        DocREDBuilderConfig(name="gda", source="pubtator", relation_names=BIOMEDICAL_RELATIONS["gda"],
                            description="GDA in ATLOP's preprocessed format (pass data_files)"),
        DocREDBuilderConfig(name="json", source="json", description="Any DocRED-format JSON files (pass data_files)"),
    ]
    DEFAULT_CONFIG_NAME = "redocred"

    def _info(self):
        return datasets.DatasetInfo(
            description=self.config.description or "Document-level relation extraction in DocRED format.",
            features=FEATURES,
            homepage="https://github.com/thunlp/DocRED",
        )

    def _split_generators(self, dl_manager):
        if self.config.data_files:
            files = {split: list(paths) for split, paths in self.config.data_files.items()}
        elif self.config.urls:
            files = {split: [path] for split, path in dl_manager.download(self.config.urls).items()}
        else:
            raise ValueError(
                f"The {self.config.name!r} config has no download address: pass data_files={{'train': ..., 'dev': ...}}."
            )
        if not self.config.relation_names and self.config.rel_info_url and not self.config.data_files:
            with open(dl_manager.download(self.config.rel_info_url), encoding="utf-8") as f:
                self.config.relation_names = json.load(f)
        if not self.config.relation_names and self.config.rel_info_url:
            # DocRED / Re-DocRED read from local files: their 96 relation ids are known even without rel_info.json.
            from ..conversion import DOCRED_RELATIONS

            self._known_relations = set(DOCRED_RELATIONS)
        return [datasets.SplitGenerator(name=split, gen_kwargs={"paths": paths, "split": split}) for split, paths in files.items()]

    def _read(self, path):
        """The documents of one file: a JSON list, or JSON lines (one document per line); UTF-8 with or without a
        BOM. A file that is neither raises a `DocREInputError` naming it (in both validation modes: nothing in
        it can be read). A bad JSON line is a bad document like any other."""
        if self.config.source == "pubtator":
            from .biomedical import read_pubtator_file

            return read_pubtator_file(path, on_error=_BadLine)
        try:
            with open(path, encoding="utf-8-sig") as f:
                text = f.read()
        except UnicodeDecodeError as error:
            raise DocREInputError(
                f"file {path} is not UTF-8 (byte {error.start}: {error.object[error.start:error.start + 1]!r}); "
                "re-encode it, e.g. iconv -f latin1 -t utf-8", field="file") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as whole_error:
            lines = [line for line in text.splitlines() if line.strip()]
            if len(lines) < 2 or text.lstrip().startswith("["):
                # One JSON document or list (pretty-printed over many lines): say where it breaks, not "line 1".
                hint = " (is the file cut short?)" if whole_error.pos >= len(text.rstrip()) - 1 else ""
                raise DocREInputError(f"file {path} is not valid JSON: {whole_error.msg} at line {whole_error.lineno}, "
                                      f"column {whole_error.colno}{hint}", field="file") from None
            return [_json_line(line, number, path) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
        if isinstance(data, dict) and "sents" in data:
            return [data]  # a single document
        if not isinstance(data, list):
            raise DocREInputError(
                f"file {path} holds a JSON {type(data).__name__}; expected a list of DocRED documents (or JSON lines)",
                field="file")
        return data

    def _generate_examples(self, paths, split):
        relations = self.config.relation_names or getattr(self, "_known_relations", None) or None
        problems = []
        unnamed = set()  # relation ids taken as they are (no relation names to check them against)
        key = 0
        for path in paths:
            for index, document in enumerate(self._read(path)):
                try:
                    if isinstance(document, _BadLine):
                        raise DocREInputError(document.message, index=index, field=f"line {document.number}")
                    check_document(document, index, relations)
                except DocREInputError as error:
                    if self.config.validation == "strict":
                        error.args = (f"{error} [split {split!r}, file {path}]",)
                        raise
                    problems.append(str(error))
                    continue
                if relations is None:
                    unnamed.update(label.get("r") for label in document.get("labels") or ())
                yield key, _to_row(document)
                key += 1
        if unnamed:
            shown = ", ".join(sorted(unnamed)[:12]) + (f" and {len(unnamed) - 12} more" if len(unnamed) > 12 else "")
            warnings.warn(f"Split {split!r}: no relation names were given, so the {len(unnamed)} relation ids of the labels "
                          f"({shown}) are taken as they are, unchecked; pass relation_names (e.g. rel_info.json) to check "
                          "them", stacklevel=2)
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            warnings.warn(f"Split {split!r}: skipped {len(problems)} bad documents, kept {key}:\n  {shown}{more}", stacklevel=2)


class _BadLine:
    """A JSON line that does not parse: reported as a bad document (skipped when lenient)."""

    def __init__(self, message, number):
        self.message, self.number = message, number


def _json_line(line, number, path):
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        return _BadLine(f"line {number} of {path} is not JSON: {error}", number)


def check_document(document: dict, index: int | None = None, relations: Collection[str] | None = None) -> dict:
    """`validate_document` plus the checks of a whole corpus: a document has a string title and entities."""
    validate_document(document, index=index, relations=relations)
    if not isinstance(document.get("title"), str):
        raise DocREInputError("a corpus document needs a string title", index=index, field="title")
    if not document.get("vertexSet"):
        raise DocREInputError("document has no entities", title=document.get("title"), index=index, field="vertexSet")


def _to_row(document):
    row = {
        "title": document["title"],
        "sents": document["sents"],
        "vertexSet": [
            [{**{k: None for k in _OPTIONAL_MENTION_FIELDS}, **mention} for mention in entity] for entity in document["vertexSet"]
        ],
        "labels": None,
        "candidate_pairs": document.get("candidate_pairs"),
    }
    if document.get("labels") is not None:  # null labels: an unlabelled document, like a test split's
        row["labels"] = [{"evidence": [], **label} for label in document["labels"]]
    return row


def load_docred(
    name: str = "redocred",
    data_files: str | list | dict | None = None,
    split: str | None = None,
    cache_dir: str | None = None,
    validation: str = "strict",
    **config_kwargs,
) -> datasets.DatasetDict | datasets.Dataset:
    """Build and load a DocRED-format dataset. Returns a `DatasetDict`, or a `Dataset` when `split` is given."""
    if validation not in ("strict", "lenient"):
        raise ValueError(f"validation must be 'strict' or 'lenient', got {validation!r}")
    if isinstance(data_files, str):
        data_files = {"train": data_files}
    builder = DocREDBuilder(config_name=name, data_files=data_files, cache_dir=cache_dir, validation=validation, **config_kwargs)
    try:
        builder.download_and_prepare()
    except datasets.exceptions.DatasetGenerationError as error:
        # datasets wraps what a generator raises; a bad document is the user's to fix, so show it as it is.
        if isinstance(error.__cause__, DocREInputError):
            raise error.__cause__ from None
        raise
    names = list(data_files) if isinstance(data_files, dict) else list(builder.config.urls or {})
    splits = {}
    for split_name in ([split] if split is not None else names or [None]):
        try:
            loaded = builder.as_dataset(split=split_name)
        except ValueError as error:
            if "corresponds to no data" not in str(error) or split_name is None:
                raise
            # A split whose file held no (good) document: an empty split and a warning, not datasets' error.
            warnings.warn(f"Split {split_name!r}: 0 documents kept (the file is empty, or every document in it was bad)", stacklevel=2)
            loaded = datasets.Dataset.from_dict({key: [] for key in FEATURES}, features=FEATURES)
        if split is not None:
            return loaded
        if split_name is None:
            return loaded
        splits[split_name] = loaded
    return datasets.DatasetDict(splits)
