"""The benchmark's naive baseline must compute the same function as the model, or its ratios mean nothing."""

import sys
from pathlib import Path

import pytest
import torch
from conftest import SMALL_HEAD

from hf_docre import DocREDataCollator, DocREFeaturizer, DocREModel
from hf_docre.processing_docre import num_feature_pairs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from naive_atlop import naive_forward  # noqa: E402


@pytest.mark.parametrize("options", [{}, {"mention_pooling": "mean", "use_context_pooling": False}])
def test_naive_reference_equals_model(encoder_dirs, relation_info, redocred_documents, options):
    torch.manual_seed(0)
    model = DocREModel.from_encoder(encoder_dirs["bert"], relations=list(relation_info), **SMALL_HEAD, **options).eval()
    # The tiny encoder has 128 positions: use the first sentence of real documents so they fit one window.
    documents = []
    for document in redocred_documents[30:40]:
        keep = [i for i, ms in enumerate(document["vertexSet"]) if all(m["sent_id"] < 1 for m in ms)]
        if len(keep) >= 2:
            documents.append({"title": document["title"], "sents": document["sents"][:1], "vertexSet": [document["vertexSet"][i] for i in keep]})
    featurizer = DocREFeaturizer.from_model(model)
    features = [f for f in featurizer.featurize(documents) if len(f["input_ids"]) <= 128][:4]
    assert len(features) >= 3
    batch = DocREDataCollator.from_model(model)(features)
    assert batch["input_ids"].shape[1] <= 128
    with torch.no_grad():
        ours = model(**batch).logits
        naive = naive_forward(model, **batch)
    for b, feature in enumerate(features):
        num_pairs = num_feature_pairs(feature)
        assert torch.allclose(ours[b, :num_pairs], naive[b, :num_pairs], atol=1e-4)
