"""The DocRED leaderboard's submission: `result.json` (a list of {title, h_idx, t_idx, r, evidence}) and its zip."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable, Sequence


def write_submission(
    predictions: Iterable[dict], output_dir: str | os.PathLike, documents: Sequence[dict] | None = None, zip_name: str = "result.zip"
) -> tuple[str, str]:
    """Write `result.json` and `result.zip` (holding result.json at its root, as CodaLab expects) to `output_dir`.

    Args:
        predictions: the official flat list, or one list of `{"h_idx", "t_idx", "r", "evidence"}` per document of
            `documents` (then `documents` gives the titles).
    Returns:
        (path of result.json, path of the zip).
    """
    if predictions and isinstance(predictions[0], (list, tuple)):
        if documents is None:
            raise ValueError("per-document predictions need `documents` for their titles")
        from ..metrics import to_official

        predictions = to_official(predictions, documents)
    records = []
    for p in predictions:
        record = {"title": p["title"], "h_idx": int(p["h_idx"]), "t_idx": int(p["t_idx"]), "r": p["r"]}
        record["evidence"] = [int(s) for s in p.get("evidence") or []]
        records.append(record)
    os.makedirs(output_dir, exist_ok=True)
    json_path = os.path.join(output_dir, "result.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(records, f, ensure_ascii=False)
    zip_path = os.path.join(output_dir, zip_name)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(json_path, arcname="result.json")
    return json_path, zip_path
