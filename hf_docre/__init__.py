"""hf_docre: document-level relation extraction the Hugging Face way.

Importing the package registers `DocREConfig` ("docre") with `AutoConfig`, the models with `AutoModel` and
`AutoModelForDocumentRelationExtraction`.
"""

from collections import OrderedDict

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining
from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping, auto_class_update
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_docre import NA_LABEL, DocREConfig
from .decoding_docre import decode_relations, relation_scores, tune_global_threshold
from .encoding_docre import plan_windows
from .heads_docre import PAIR_HEADS, PairHead, PairInputs, register_pair_head
from .layers_docre import GroupBilinear
from .losses_docre import adaptive_focal_loss, adaptive_thresholding_loss, binary_relation_loss
from .methods_docre import METHODS, DocREMethod, register_method
from .modeling_docre import PIPELINE_TASK, DocREForRelationExtraction, DocREModel, DocREModelOutput, DocREPreTrainedModel
from .pipeline_docre import DocumentRelationExtractionPipeline, SpanAlignmentError, text_to_document, to_docred_predictions
from .pretraining_docre import DocREForDenoisingPreTraining, DocREPreTrainingOutput
from .processing_docre import DocREDataCollator, DocREFeaturizer, DocREInputError
from .render_docre import DocREReport, render
from .text_docre import group_entity_spans, normalize_entity_name

__version__ = "0.1.0"

MODEL_FOR_DOCUMENT_RELATION_EXTRACTION_MAPPING = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


class AutoModelForDocumentRelationExtraction(_BaseAutoModelClass):
    _model_mapping = MODEL_FOR_DOCUMENT_RELATION_EXTRACTION_MAPPING


AutoModelForDocumentRelationExtraction = auto_class_update(
    AutoModelForDocumentRelationExtraction, head_doc="document-level relation extraction"
)

AutoConfig.register(DocREConfig.model_type, DocREConfig, exist_ok=True)
AutoModel.register(DocREConfig, DocREForRelationExtraction, exist_ok=True)
AutoModelForDocumentRelationExtraction.register(DocREConfig, DocREForRelationExtraction, exist_ok=True)
AutoModelForPreTraining.register(DocREConfig, DocREForDenoisingPreTraining, exist_ok=True)
PIPELINE_REGISTRY.register_pipeline(
    PIPELINE_TASK, pipeline_class=DocumentRelationExtractionPipeline, pt_model=AutoModel, type="text"
)

__all__ = [
    "NA_LABEL",
    "AutoModelForDocumentRelationExtraction",
    "DocREConfig",
    "DocREDataCollator",
    "DocREFeaturizer",
    "DocREInputError",
    "DocREForDenoisingPreTraining",
    "DocREForRelationExtraction",
    "DocREPreTrainingOutput",
    "DocREMethod",
    "DocREModel",
    "DocREModelOutput",
    "DocREPreTrainedModel",
    "DocumentRelationExtractionPipeline",
    "PIPELINE_TASK",
    "SpanAlignmentError",
    "text_to_document",
    "to_docred_predictions",
    "group_entity_spans",
    "render",
    "DocREReport",
    "normalize_entity_name",
    "GroupBilinear",
    "METHODS",
    "PAIR_HEADS",
    "PairHead",
    "PairInputs",
    "adaptive_focal_loss",
    "register_method",
    "register_pair_head",
    "relation_scores",
    "adaptive_thresholding_loss",
    "binary_relation_loss",
    "decode_relations",
    "plan_windows",
    "tune_global_threshold",
]
