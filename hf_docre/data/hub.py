"""Publish a prepared DocRED-format dataset to the Hub as parquet (one file per split) with a dataset card."""

import os
import tempfile


def publish_dataset(dataset_dict, repo_id, card=None, private=False, token=None, commit_message="Upload DocRED-format data", api=None):
    """Write each split as `data/<split>.parquet` (+ README.md card) and upload the folder with `huggingface_hub`.

    Args:
        dataset_dict: a `datasets.DatasetDict` from [`load_docred`].
        card: the README.md text; a minimal card with the parquet layout is written when None.
        api: a `huggingface_hub.HfApi` (for tests or custom endpoints).
    Returns:
        the `CommitInfo` of the upload.
    """
    from huggingface_hub import HfApi

    api = api or HfApi(token=token)
    with tempfile.TemporaryDirectory() as folder:
        os.makedirs(os.path.join(folder, "data"))
        for split, dataset in dataset_dict.items():
            dataset.to_parquet(os.path.join(folder, "data", f"{split}.parquet"))
        with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as f:
            f.write(card or _default_card(dataset_dict, repo_id))
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="dataset", commit_message=commit_message)


def _default_card(dataset_dict, repo_id):
    """README.md from `hub_cards/dataset_card.md`: parquet layout for the Hub viewer and the split sizes."""
    from ..model_card import read_template

    configs = "\n".join(f"  - split: {split}\n    path: data/{split}.parquet" for split in dataset_dict)
    yaml = (
        f"configs:\n- config_name: default\n  data_files:\n{configs}\n"
        "task_categories:\n- text-classification\ntags:\n- document-level-relation-extraction\n- docred"
    )
    splits = "\n".join(f"| {split} | {len(dataset)} |" for split, dataset in dataset_dict.items())
    template = read_template("dataset_card.md")
    return template.format(yaml=yaml, title=repo_id.split("/")[-1], splits_table=splits, repo_id=repo_id)
