"""DocRED-format data: the `datasets` builder, corpus readers, the submission writer and Hub publishing."""

from ..processing_docre import DocREInputError, validate_document
from .biomedical import parse_pubtator_line, read_pubtator_file
from .builder import FEATURES, DocREDBuilder, DocREDBuilderConfig, check_document, load_docred, to_docred_json
from .hub import publish_dataset
from .joining import (
    JoinedTrainingCallback,
    JoinedTrainingFeatures,
    cross_part_pair_loss_weight,
    join_documents,
    joined_training_documents,
)
from .submission import write_submission

__all__ = [
    "FEATURES",
    "JoinedTrainingCallback",
    "JoinedTrainingFeatures",
    "DocREDBuilder",
    "DocREDBuilderConfig",
    "DocREInputError",
    "check_document",
    "cross_part_pair_loss_weight",
    "join_documents",
    "joined_training_documents",
    "load_docred",
    "parse_pubtator_line",
    "publish_dataset",
    "read_pubtator_file",
    "to_docred_json",
    "validate_document",
    "write_submission",
]
