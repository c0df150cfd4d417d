"""Folders saved by hf_docre 0.1 (before the layout refactor) still load, with identical logits.

`fixtures/saved_folders.json` was written by `fixtures/make_saved_folders.py` with the 0.1 code: each entry holds
the saved config.json, the weight names and shapes, and the logits 0.1 gave. The weights are rebuilt from their
names, so no weights are committed.
"""

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

FIXTURES = Path(__file__).with_name("fixtures")
sys.path.insert(0, str(FIXTURES))
from make_saved_folders import fixture_inputs, fixture_weights  # noqa: E402

SAVED = json.loads((FIXTURES / "saved_folders.json").read_text())


def _old_folder(entry, folder):
    (folder / "config.json").write_text(json.dumps(entry["config"]))
    shapes = {name: tuple(shape) for name, shape in entry["shapes"].items()}
    save_file({k: v.contiguous() for k, v in fixture_weights(shapes).items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    return folder


@pytest.mark.parametrize("name", sorted(SAVED))
def test_folder_saved_by_0_1_loads_with_identical_logits(name, tmp_path):
    from hf_docre import AutoModelForDocumentRelationExtraction, DocREModel

    entry = SAVED[name]
    folder = _old_folder(entry, tmp_path)
    for loader in (DocREModel, AutoModelForDocumentRelationExtraction):
        model, info = loader.from_pretrained(str(folder), output_loading_info=True)
        model.eval()
        assert not info["missing_keys"] and not info["unexpected_keys"], (name, info)
        with torch.no_grad():
            for batch_name, batch in fixture_inputs(entry["kind"]).items():
                logits = model(**batch).logits
                expected = torch.tensor(entry["logits"][batch_name])
                torch.testing.assert_close(logits, expected, atol=2e-5, rtol=1e-4, msg=f"{name} {batch_name}")
