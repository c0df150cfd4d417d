"""Corpus-scale jobs across processes and machines, resumable, in flat memory.

The long jobs over a corpus (`hf-docre predict` / `predict_corpus`, `denoising.write_pair_scores`,
`distillation.write_teacher_logits`) run through one [`CorpusJob`]:

- **Sharding.** Under torchrun or `accelerate launch` (world size > 1) rank r takes its contiguous shard of the input
  (documents `N*r//W` to `N*(r+1)//W`, in input order) and writes its own part; rank 0 then merges the parts into
  exactly the output one process writes (one process writes one part and merges it, the same way). The ranks meet
  through `torch.distributed` (gloo, set up here from the launcher's environment when nobody has).
- **Resumable at document granularity.** A part is JSON lines, one per document (`{"i": index, "r": record}`), each
  batch flushed to disk. A rerun (after a kill of one rank or all) reads what its part holds, drops a torn last
  line, skips those documents and says how many; at most the batch in flight is redone. A finished run is recorded
  as complete in the manifest and is not run again unless `overwrite=True`.
- **Manifests.** `<parts folder>/manifest.json` records the job, the number of documents, the world size and the
  job's fingerprints (model weights, input, options): a rerun with another model or input is refused (nothing is
  deleted) unless `overwrite=True`.
- **Memory** stays flat in the number of documents: inputs are read lazily, results go to disk per batch, the merge
  streams (reordering within one bucketing window at most).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator

MANIFEST = "manifest.json"


def distributed_world() -> tuple[int, int]:
    """(rank, world size) of this process: torch.distributed's when it is initialised, else the launcher's `RANK` /
    `WORLD_SIZE` (torchrun, accelerate launch), else (0, 1)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shard_bounds(num_items: int, rank: int, world_size: int, align: int = 1) -> tuple[int, int]:
    """[start, stop) of rank `rank`'s contiguous shard of `num_items` items; shards start at multiples of `align` (so
    that batches formed within windows of `align` items are the same whatever the number of ranks)."""
    units = -(-num_items // align)
    return min(num_items, units * rank // world_size * align), min(num_items, units * (rank + 1) // world_size * align)


class _Group:
    """The ranks' meeting point: torch.distributed, set up (gloo) from the launcher's environment when no one has, and
    torn down at the end if set up here. With one process every call is local."""

    def __init__(self):
        self.rank, self.world_size = distributed_world()
        self.created = False
        if self.world_size > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="gloo")
                self.created = True
            self.dist = dist
            # gloo's object collectives work on CPU whatever device the model is on
            self.group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None

    def broadcast(self, value):
        if self.world_size == 1:
            return value
        box = [value]
        self.dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def gather(self, value) -> list:
        if self.world_size == 1:
            return [value]
        out = [None] * self.world_size
        self.dist.all_gather_object(out, value, group=self.group)
        return out

    def close(self):
        if self.created:
            self.dist.destroy_process_group()


class CorpusJob:
    """One corpus job: this rank's shard, its resumable part, and (rank 0) the merge. See the module docstring.

    Args:
        parts_dir: folder of the parts and the manifest.
        manifest: what identifies the run (job name, fingerprints, options); `num_items` and `world_size` are added.
        num_items: documents in the input.
        overwrite: start again when the folder holds another (or a finished) run.
        log: where the job says what it skips and merges (default: stderr).
        align: shards start at multiples of this (the bucketing window).
    """

    def __init__(self, parts_dir: str, manifest: dict, num_items: int, overwrite: bool = False,
                 log: Callable[[str], None] | None = None, align: int = 1):
        self.parts_dir = parts_dir
        self.num_items = num_items
        self.overwrite = overwrite
        self.group = _Group()
        self.rank, self.world_size = self.group.rank, self.group.world_size
        self.manifest = {**manifest, "num_items": num_items, "world_size": self.world_size}
        self.align = align
        self.start, self.stop = shard_bounds(num_items, self.rank, self.world_size, align)
        self.log = log or _to_stderr
        self.done_indices: set[int] = set()
        self._handle = None

    # -- set-up --------------------------------------------------------------------------------------------------

    def part_path(self, rank: int | None = None) -> str:
        rank = self.rank if rank is None else rank
        return os.path.join(self.parts_dir, f"part-{rank:05d}-of-{self.world_size:05d}.jsonl")

    def _progress_path(self, rank):
        return os.path.join(self.parts_dir, f"progress-{rank:05d}")

    def begin(self, clear: Callable[[], None] | None = None) -> bool:
        """Check the manifest (rank 0 decides, every rank follows) and open this rank's part. Returns False when the
        run is already complete (nothing to do). `clear()` deletes the job's outputs when starting over."""
        decision = None
        if self.rank == 0:
            decision = self._decide(clear)
        decision = self.group.broadcast(decision)
        if decision["status"] == "error":
            self.group.close()
            raise ValueError(decision["message"])
        if decision["status"] == "complete":
            if self.rank == 0:
                self.log(f"{self.parts_dir}: this run is complete ({self.num_items} documents); nothing to do "
                         "(overwrite to run it again)")
            self.group.close()
            return False
        path = self.part_path()
        self.done_indices = _read_done(path)
        skipped = len(self.done_indices)
        if skipped:
            self.log(f"rank {self.rank}: resuming, skipping {skipped} document(s) already in {os.path.basename(path)}")
        self._handle = open(path, "a", encoding="utf-8")
        return True

    def _decide(self, clear):
        path = os.path.join(self.parts_dir, MANIFEST)
        existing = _read_manifest(path)
        if existing is not None:
            complete = existing.pop("complete", False)
            if existing == self.manifest and complete and not self.overwrite:
                return {"status": "complete"}
            if existing != self.manifest and not self.overwrite:
                differences = _differences(existing, self.manifest)
                hint = (f" (it ran with {existing.get('world_size')} process(es): rerun with as many, or overwrite)"
                        if differences == ["world_size"] else "")
                return {"status": "error", "message":
                        f"{self.parts_dir} holds another run (it differs in {', '.join(differences)}){hint}; use another "
                        "output, or overwrite to start again. Nothing was deleted."}
            if self.overwrite:
                existing = None
        if existing is None:
            if os.path.isdir(self.parts_dir):
                for name in os.listdir(self.parts_dir):
                    if name.startswith(("part-", "progress-")) or name == MANIFEST:
                        os.remove(os.path.join(self.parts_dir, name))
            if clear is not None:
                clear()
            os.makedirs(self.parts_dir, exist_ok=True)
            _write_json(path, {**self.manifest, "complete": False})
        return {"status": "run"}

    # -- this rank's shard ---------------------------------------------------------------------------------------------

    def todo(self) -> Iterator[int]:
        """The indices of this rank's shard not done yet, in input order."""
        return (i for i in range(self.start, self.stop) if i not in self.done_indices)

    @property
    def shard_size(self) -> int:
        return self.stop - self.start

    def write(self, items: Iterable[tuple[int, object]]) -> None:
        """Append finished documents `(index, record)` to this rank's part, on disk before returning."""
        for index, record in items:
            self._handle.write(json.dumps({"i": index, "r": record}, ensure_ascii=False, separators=(",", ":")) + "\n")
            self.done_indices.add(index)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        with open(self._progress_path(self.rank), "w") as handle:
            handle.write(str(len(self.done_indices)))

    def done_everywhere(self) -> int:
        """Documents done by all ranks so far (read from their progress files; for rank 0's progress bar)."""
        total = 0
        for rank in range(self.world_size):
            with contextlib.suppress(OSError, ValueError):
                with open(self._progress_path(rank)) as handle:
                    total += int(handle.read() or 0)
        return total

    # -- the end -------------------------------------------------------------------------------------------------------

    def finish(self, merge: Callable[[Iterator[tuple[int, object]]], None], ok: bool = True,
               merge_partial: bool = False, summary=None) -> tuple[bool, list]:
        """Close this rank's part, wait for every rank, and (rank 0) merge the parts in input order with
        `merge(records)` when every rank finished its shard; then mark the run complete and delete the parts.
        When a rank stopped early (`ok=False`) and `merge_partial`, rank 0 merges the documents done, in input order,
        and keeps the parts for a rerun. Returns (whether the run is complete, every
        rank's `summary`)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        gathered = self.group.gather((bool(ok) and len(self.done_indices) >= self.shard_size, summary))
        complete = all(finished for finished, _ in gathered)
        if self.rank == 0 and (complete or merge_partial):
            merge(self.records(partial=not complete))
            if complete:
                _write_json(os.path.join(self.parts_dir, MANIFEST), {**self.manifest, "complete": True})
                for rank in range(self.world_size):
                    for path in (self.part_path(rank), self._progress_path(rank)):
                        with contextlib.suppress(FileNotFoundError):
                            os.remove(path)
                if self.world_size > 1:
                    self.log(f"merged {self.world_size} parts: {self.num_items} documents")
        self.group.gather(True)  # the others return once the merge is written
        self.group.close()
        return complete, [s for _, s in gathered]

    def abort(self, merge: Callable[[Iterator[tuple[int, object]]], None] | None = None) -> None:
        """Stop after an exception (Ctrl-C, out of memory): this rank's part stays on disk for a rerun. With one
        process, the documents done are also merged into the output (in input order); no
        collective call is made, so the other ranks are not waited for."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self.world_size == 1 and merge is not None:
            merge(self.records(partial=True))

    def records(self, partial: bool = False) -> Iterator[tuple[int, object]]:
        """Every finished `(index, record)` of all parts, in input order (a part written out of order, as length
        bucketing does, is reordered with a buffer of at most one bucketing window). With `partial`, documents not
        done are left out; otherwise one missing is an error."""
        for rank in range(self.world_size):
            start, stop = shard_bounds(self.num_items, rank, self.world_size, self.align)
            pending, expected = {}, start
            for index, record in _read_part(self.part_path(rank)):
                if not start <= index < stop:
                    continue
                pending[index] = record
                while expected in pending:
                    yield expected, pending.pop(expected)
                    expected += 1
            if expected < stop and not partial:
                raise RuntimeError(f"{self.part_path(rank)} lacks document {expected}; rerun to finish it")
            for index in sorted(pending):
                yield index, pending[index]


def _write_json(path, value):
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=1)
    os.replace(temporary, path)


def _read_part(path) -> Iterator[tuple[int, object]]:
    """The `(index, record)` lines of a part, in file order; a torn last line (a kill while writing) is not read."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return
            item = json.loads(line)
            yield item["i"], item["r"]


def _cut_torn_tail(path) -> None:
    """Cut a part's torn last line (a kill while writing), so that appending continues on a line boundary."""
    if not os.path.exists(path):
        return
    with open(path, "rb") as handle:
        data_end = good = 0
        for line in handle:
            data_end += len(line)
            if line.endswith(b"\n"):
                good = data_end
    if good != os.path.getsize(path):
        with open(path, "r+b") as handle:
            handle.truncate(good)


def _read_done(path) -> set[int]:
    """The indices a part holds, after cutting a torn last line."""
    _cut_torn_tail(path)
    return {index for index, _ in _read_part(path)}


def _read_manifest(path) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _differences(existing: dict, wanted: dict) -> list[str]:
    """The manifest keys whose values differ (or are on one side only)."""
    return sorted(key for key in set(existing) | set(wanted) if existing.get(key) != wanted.get(key))


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def length_buckets(items: list, length: Callable[[object], int], batch_size: int) -> list[list[int]]:
    """Positions of `items` in batches of `batch_size` formed by length (longest first, so the memory peak shows
    at once), for one bucketing window."""
    order = sorted(range(len(items)), key=lambda k: -length(items[k]))
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


class RankProgress:
    """A progress bar for this rank's shard with documents/s and ETA; rank 0's also shows every rank's total."""

    def __init__(self, job: CorpusJob, desc: str, disable: bool = False):
        from transformers.utils.logging import tqdm

        self.job = job
        self.bar = tqdm(total=job.shard_size, initial=len(job.done_indices), desc=f"{desc} (rank {job.rank})" if job.world_size > 1 else desc,
                        unit="doc", disable=disable, position=job.rank if job.world_size > 1 else None, dynamic_ncols=True)
        self.last = 0.0

    def update(self, count: int):
        self.bar.update(count)
        if self.job.rank == 0 and self.job.world_size > 1 and time.monotonic() - self.last > 2:
            self.last = time.monotonic()
            self.bar.set_postfix_str(f"all ranks {self.job.done_everywhere()}/{self.job.num_items}")

    def close(self):
        self.bar.close()


def remove_path(path: str) -> None:
    """Delete a file or a folder, if it is there."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


# -- relation extraction over a corpus ------------------------------------------------------------------------------------


class SequenceDocuments:
    """Documents from a list or a `datasets.Dataset` (read row by row), for [`predict_corpus`]."""

    def __init__(self, documents, name: str = "input"):
        self.documents, self.name = documents, name

    def __len__(self):
        return len(self.documents)

    def select(self, wanted: Callable[[int], bool]) -> Iterator[tuple[int, str, object]]:
        for index in range(len(self.documents)):
            if wanted(index):
                yield index, f"{self.name}:#{index + 1}", self.documents[index]

    def fingerprint(self) -> str:
        import hashlib

        if isinstance(getattr(self.documents, "_fingerprint", None), str):  # a datasets.Dataset knows its own
            return self.documents._fingerprint
        digest = hashlib.sha256()
        for index in range(len(self.documents)):
            digest.update(json.dumps(self.documents[index], sort_keys=True, default=str).encode())
        return digest.hexdigest()


def model_fingerprint(model) -> str:
    """SHA-256 of a model's weights (names, dtypes and bytes)."""
    from .distillation import teacher_fingerprint

    return teacher_fingerprint(model)


def predict_corpus(pipe, documents, output: str, batch_size: int = 8, bucket_window: int = 16, errors: str = "raise",
                   overwrite: bool = False, preprocess_params: dict | None = None, forward_params: dict | None = None,
                   postprocess_params: dict | None = None, progress: bool = True, keep_documents: bool = False,
                   log: Callable[[str], None] | None = None, input_fingerprint: str | None = None,
                   manifest_options: dict | None = None) -> dict:
    """Relations for every document of a corpus, written to `output` (`.jsonl`: `{"title", "source", "relations"}` per
    document, or `{"title", "source", "error"}` with `errors="skip"`; `.json`: the official DocRED submission), as
    one process or as every rank of torchrun / accelerate launch (a [`CorpusJob`]: sharded, resumable, merged).

    Args:
        pipe: a `doc-relation-extraction` pipeline.
        documents: a [`SequenceDocuments`] (or a list / `Dataset`), or anything with `len()` and `select(wanted)`
            (`cli.FileDocuments` reads files lazily).
        batch_size: documents per model call.
        bucket_window: batches are formed by length within windows of `bucket_window` x `batch_size` documents
            (output order is kept); 0 or 1 runs documents in input order.
        errors: `"raise"` stops this rank at a bad document (the documents before it are written); `"skip"` writes
            an error record and goes on.
        keep_documents: also return the documents and relations run now (for an HTML page; one process only).
        input_fingerprint / manifest_options: what identifies the input and the options in the manifest (default: a
            hash of the documents, and the pipeline parameters with objects named by their type).
    Returns:
        `{"complete", "documents", "relations", "failures" (messages), "stopped" (the message that stopped a rank, or
        None), "skipped" (documents already done), "results" (with keep_documents)}`, gathered from every rank.
    """
    if not (hasattr(documents, "select") and hasattr(documents, "fingerprint")):  # a list or a Dataset
        documents = SequenceDocuments(documents)
    submission = os.path.splitext(output)[1].lower() == ".json"
    params = [dict(p or {}) for p in (preprocess_params, forward_params, postprocess_params)]
    params[2]["return_document"] = True
    manifest = {
        "job": "predict", "model": model_fingerprint(pipe.model),
        "options": json.dumps(manifest_options if manifest_options is not None else params, sort_keys=True,
                              default=lambda value: type(value).__qualname__),
        "input": input_fingerprint if input_fingerprint is not None else documents.fingerprint(),
        "output": os.path.basename(output),
    }
    window = batch_size * max(1, bucket_window)
    job = CorpusJob(output + ".parts", manifest, len(documents), overwrite=overwrite, log=log, align=window)
    if not job.begin(clear=lambda: remove_path(output)):
        return {"complete": True, "documents": 0, "relations": 0, "failures": [], "stopped": None, "skipped": job.num_items,
                "written": job.num_items, "results": []}
    skipped = len(job.done_indices)
    preprocess, forward, postprocess = params
    summary = {"documents": 0, "relations": 0, "failures": [], "stopped": None}
    kept = []
    bar = RankProgress(job, "documents", disable=not progress)

    def record_of(source, document, relations):
        if submission:
            from .metrics import to_official
            from .pipeline_docre import to_docred_predictions

            return [{"title": p["title"], "h_idx": int(p["h_idx"]), "t_idx": int(p["t_idx"]), "r": p["r"],
                     "evidence": [int(s) for s in p.get("evidence") or []]}
                    for p in to_official(to_docred_predictions([relations]), [document])]
        return {"title": (document or {}).get("title", ""), "source": source, "relations": relations}

    def error_record(source, document, message):
        if submission:
            return []
        return {"title": (document if isinstance(document, dict) else {}).get("title", ""), "source": source, "error": message}

    def run_window(pending):
        """Preprocess a window, run it in batches (by length), write the documents not done yet. A batch is the same
        whether the run is fresh or resumed (a resumed batch reruns its done documents and writes only the others),
        so a resumed run writes exactly what an uninterrupted one does. Returns False when a bad document stops the
        run."""
        prepared, stop_at = [], None
        for index, source, document in pending:
            error = document if isinstance(document, Exception) else None
            if error is None:
                try:
                    prepared.append((index, source, pipe.preprocess(document, **preprocess)))
                    continue
                except (ValueError, KeyError, TypeError) as caught:
                    error = caught
            if index in job.done_indices:
                continue
            message = str(error) if str(error).startswith(source) else f"{source}: {error}"
            summary["failures"].append(message)
            if errors == "raise":
                summary["stopped"] = message
                stop_at = index
                break
            job.write([(index, error_record(source, document, message))])
            bar.update(1)
        if bucket_window > 1:
            batches = length_buckets(prepared, lambda item: _feature_length(item[2]), batch_size)
        else:
            batches = [list(range(k, min(k + batch_size, len(prepared)))) for k in range(0, len(prepared), batch_size)]
        for positions in batches:
            part = [prepared[k] for k in positions]
            if all(index in job.done_indices for index, _, _ in part):
                continue
            results = pipe.run_preprocessed([item[2] for item in part], forward, postprocess)
            written = []
            for (index, source, _), result in zip(part, results):
                if index in job.done_indices:
                    continue
                written.append((index, record_of(source, result["document"], result["relations"])))
                summary["documents"] += 1
                summary["relations"] += len(result["relations"])
                if keep_documents:
                    kept.append((index, result["document"], result["relations"]))
            job.write(written)
            bar.update(len(written))
        return stop_at is None

    # Windows sit at fixed positions (multiples of `window`), so their batches do not depend on the number of ranks;
    # a window whose documents are all done is not read at all.
    open_windows = {k // window for k in range(job.start, job.stop) if k not in job.done_indices}
    ok = True
    try:
        pending, current = [], None
        selected = documents.select(lambda i: job.start <= i < job.stop and i // window in open_windows)
        for item in selected:
            if current is not None and item[0] // window != current:
                ok = run_window(pending)
                pending = []
                if not ok:
                    break
            current = item[0] // window
            pending.append(item)
        if ok and pending:
            ok = run_window(pending)
    except BaseException:
        bar.close()
        job.abort(_merge_predictions(output, submission))
        raise
    bar.close()
    merge = _merge_predictions(output, submission)
    complete, summaries = job.finish(merge, ok=ok, merge_partial=True, summary={**summary, "failures": summary["failures"][:50]})
    total = {"complete": complete, "skipped": skipped, "written": merge.count,
             "results": [(d, r) for _, d, r in sorted(kept, key=lambda x: x[0])]}
    total["documents"] = sum(s["documents"] for s in summaries)
    total["relations"] = sum(s["relations"] for s in summaries)
    total["failures"] = [f for s in summaries for f in s["failures"]]
    total["stopped"] = next((s["stopped"] for s in summaries if s["stopped"]), None)
    return total


def _feature_length(prepared):
    feature = prepared["inputs"].features[0]
    return 0 if feature is None else len(feature["input_ids"])


class _merge_predictions:
    """Writes the merged records to `output` (atomically) and counts the documents."""

    def __init__(self, output, submission):
        self.output, self.submission, self.count = output, submission, 0

    def __call__(self, records):
        temporary = self.output + ".tmp"
        self.count = 0
        with open(temporary, "w", encoding="utf-8") as handle:
            if self.submission:
                handle.write("[")
                first = True
                for _, items in records:
                    self.count += 1
                    for item in items:
                        handle.write(("" if first else ", ") + json.dumps(item, ensure_ascii=False))
                        first = False
                handle.write("]")
            else:
                for _, record in records:
                    self.count += 1
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(temporary, self.output)


# -- jobs whose output is a folder of shards (teacher logits, pair scores) ------------------------------------------------


def run_shard_folder(output_dir: str, manifest_name: str, manifest: dict, num_items: int, shard_size: int,
                     shard_path: Callable[[int], str], compute: Callable[[list[int]], list], write_shard: Callable[[int, list], None],
                     length: Callable[[int], int] | None = None, batch_size: int = 8, overwrite: bool = False,
                     clear: Callable[[], None] | None = None, progress: bool = True, desc: str = "documents",
                     log: Callable[[str], None] | None = None, mismatch: Callable[[list[str]], str] | None = None) -> None:
    """Run a job whose output is a folder of shards of `shard_size` documents (`shard_path(shard)`), across the ranks
    of torchrun / accelerate launch, resumable at document granularity.

    Rank r takes the contiguous shards `S*r//W` to `S*(r+1)//W`. A shard already written is skipped; a shard in
    progress keeps its finished documents in `<shard>.progress.jsonl` (one JSON line per document, flushed per
    batch), so a rerun redoes at most the batch in flight. When all its documents are done the shard is written whole
    (`write_shard(shard, records in input order)`) and its progress file removed. The folder's manifest
    (`manifest_name`, written by rank 0) must match `manifest` unless `overwrite`, which deletes the shards
    (`clear()`) first. `compute(indices)` returns one JSON-able record per index; `length(index)` orders a shard's
    documents into batches by length (output order is kept)."""
    group = _Group()
    rank, world_size = group.rank, group.world_size
    say = log or _to_stderr
    num_shards = max(1, -(-num_items // shard_size))
    path = os.path.join(output_dir, manifest_name)
    decision = {"status": "run"}
    if rank == 0:
        os.makedirs(output_dir, exist_ok=True)
        existing = _read_manifest(path)
        if existing is not None and existing != manifest:
            differences = _differences(existing, manifest)
            if not overwrite:
                decision = {"status": "error", "message": mismatch(differences) if mismatch else
                            f"{output_dir} holds another run (it differs in {', '.join(differences)}); use another folder, "
                            "or overwrite to start again"}
            else:
                existing = None
        if decision["status"] == "run" and existing is None:
            for name in os.listdir(output_dir):
                if name.endswith((".progress.jsonl", ".partial")):
                    os.remove(os.path.join(output_dir, name))
            if clear is not None:
                clear()
            _write_json(path, manifest)
    decision = group.broadcast(decision)
    if decision["status"] == "error":
        group.close()
        raise ValueError(decision["message"])
    first, last = shard_bounds(num_shards, rank, world_size)
    mine = [s for s in range(first, last) if not os.path.exists(shard_path(s))]
    total = min(num_items, last * shard_size) - min(num_items, first * shard_size)
    from transformers.utils.logging import tqdm

    bar = tqdm(total=total, desc=f"{desc} (rank {rank})" if world_size > 1 else desc, unit="doc", disable=not progress,
               position=rank if world_size > 1 else None)
    bar.update(total - sum(min(num_items, (s + 1) * shard_size) - s * shard_size for s in mine))
    ok = True
    try:
        for shard in mine:
            start, stop = shard * shard_size, min(num_items, (shard + 1) * shard_size)
            progress_path = shard_path(shard) + ".progress.jsonl"
            _cut_torn_tail(progress_path)
            done = dict(_read_part(progress_path))
            if done:
                say(f"rank {rank}: resuming shard {shard}, skipping {len(done)} document(s) already done")
                bar.update(len(done))
            # The shard's batches are the same in a fresh and a resumed run: a batch with any document not done is
            # run whole, and only those documents are written.
            order = list(range(start, stop))
            if length is not None:
                order.sort(key=lambda i: -length(i))
            with open(progress_path, "a", encoding="utf-8") as handle:
                for k in range(0, len(order), batch_size):
                    indices = order[k : k + batch_size]
                    if all(i in done for i in indices):
                        continue
                    new = [(index, record) for index, record in zip(indices, compute(indices)) if index not in done]
                    for index, record in new:
                        handle.write(json.dumps({"i": index, "r": record}, separators=(",", ":")) + "\n")
                        done[index] = record
                    handle.flush()
                    os.fsync(handle.fileno())
                    bar.update(len(new))
            write_shard(shard, [done[i] for i in range(start, stop)])
            os.remove(progress_path)
    except BaseException:
        ok = False
        bar.close()
        if world_size == 1:
            group.close()
        raise
    bar.close()
    finished = group.gather(ok)
    group.close()
    if rank == 0 and world_size > 1:
        say(f"{output_dir}: {sum(finished)} of {world_size} ranks finished their shards")


def encode_array(values) -> dict:
    """A numpy array as JSON: its dtype, shape and bytes in base64 (exact)."""
    import base64

    import numpy as np

    values = np.ascontiguousarray(values)
    return {"dtype": str(values.dtype), "shape": list(values.shape), "data": base64.b64encode(values.tobytes()).decode("ascii")}


def decode_array(item: dict):
    import base64

    import numpy as np

    return np.frombuffer(base64.b64decode(item["data"]), dtype=item["dtype"]).reshape(item["shape"])
