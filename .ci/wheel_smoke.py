"""Run from a fresh venv where hf_docre was installed from its wheel (not editable): a short training run of
examples/run_docre.py with a tiny random encoder, the model card rendered from the installed templates, and the
saved folder through the pipeline by path.

    python .ci/wheel_smoke.py --repo REPO --data REPO/../shared/data --workdir DIR
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    repo, data, work = Path(args.repo).resolve(), Path(args.data).resolve(), Path(args.workdir).resolve()
    os.chdir(work)  # not the repository: `import hf_docre` must find the installed package

    from transformers import BertConfig, BertModel, BertTokenizer, pipeline

    import hf_docre

    location = Path(hf_docre.__file__).resolve()
    assert "site-packages" in location.parts and repo not in location.parents, f"hf_docre imported from {location}"
    from hf_docre.model_card import read_template

    assert "{yaml}" in read_template("model_card.md")

    documents = json.loads((data / "redocred" / "dev_revised.json").read_text())[:8]
    words = sorted({w.lower() for d in documents for s in d["sents"] for w in s if re.fullmatch(r"[a-z]+", w.lower())})[:500]
    chars = sorted({c for d in documents for s in d["sents"] for w in s for c in w.lower()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "*"] + words
    vocab += [c for c in chars if c not in vocab] + ["##" + c for c in chars]
    encoder_dir = work / "tiny-bert"
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(dict.fromkeys(vocab))}, model_max_length=128)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(encoder_dir)
    tokenizer.save_pretrained(encoder_dir)
    (work / "train.json").write_text(json.dumps(documents))

    output_dir = work / "out"
    command = [
        sys.executable, str(repo / "examples" / "run_docre.py"), "--model_name_or_path", str(encoder_dir),
        "--relations_file", str(data / "docred" / "rel_info.json"), "--train_file", str(work / "train.json"),
        "--validation_holdout", "2", "--config_overrides", "emb_size=64,block_size=16", "--do_train", "--do_eval",
        "--output_dir", str(output_dir), "--max_steps", "2", "--use_cpu", "--report_to", "none",
        "--save_strategy", "no", "--license", "apache-2.0",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"run_docre.py failed from the installed wheel:\n{result.stderr[-4000:]}")
    card = (output_dir / "README.md").read_text()
    assert "## Limitations" in card and "license: apache-2.0" in card and "model-index" in card, card[:2000]
    extractor = pipeline("doc-relation-extraction", model=str(output_dir))
    relations = extractor(documents[0])
    assert isinstance(relations, list)
    # the console script from the wheel: raw text in, relations and the HTML page out
    (work / "note.txt").write_text("Dr. Jane Doe joined Acme Inc. in March 2001. Doe studied at the University of Edinburgh.")
    script = Path(sys.executable).parent / "hf-docre"
    result = subprocess.run([str(script), "predict", "--model", str(output_dir), "--input", str(work / "note.txt"), "--output",
                             str(work / "note.jsonl"), "--recognizer", "rules", "--threshold", "0", "--html", str(work / "note.html")],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"hf-docre predict failed from the installed wheel:\n{result.stderr[-4000:]}")
    record = json.loads((work / "note.jsonl").read_text())
    assert record["relations"] and 'class="docre-doc"' in (work / "note.html").read_text()
    print(f"wheel smoke test passed: hf_docre from {location.parent}, card {len(card)} chars, {len(relations)} relations, "
          f"hf-docre predict: {len(record['relations'])} relations")


if __name__ == "__main__":
    main()
