"""The DocRED metric: `score_docred` (pure function) and the `evaluate` module in `metrics/docred/`.

Load the `evaluate.Metric` with `evaluate.load(hf_docre.metrics.METRIC_PATH)`.
"""

import os

from .docred.docred import frequent_relations, score_docred, to_official, train_facts

METRIC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "docred")

__all__ = ["METRIC_PATH", "frequent_relations", "score_docred", "to_official", "train_facts"]
