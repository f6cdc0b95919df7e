"""Expert knowledge base: report embeddings, PKS centres, RKS reports and the IEK lookup.

Pipeline (each step one DVC stage): :func:`embed_texts` the training reports ->
:func:`build_index` over them -> :func:`build_pks` (centres per observation and per label
combination) -> :func:`build_rks` (nearest real report carrying each key) ->
:class:`KnowledgeBase` turns diagnosed labels into knowledge token ids.
"""

from ekagen.knowledge.embedding import (
    DEFAULT_MODEL,
    embed_texts,
    load_embeddings,
    resolve_model_path,
    save_embeddings,
)
from ekagen.knowledge.iek import IEKMatch, KnowledgeBase
from ekagen.knowledge.index import build_index, gpu_available, load_index, save_index, search
from ekagen.knowledge.pks import PKSResult, build_pks, combination_key, positive_mask
from ekagen.knowledge.rks import build_rks, knowledge_metrics

__all__ = [
    "DEFAULT_MODEL",
    "IEKMatch",
    "KnowledgeBase",
    "PKSResult",
    "build_index",
    "build_pks",
    "build_rks",
    "combination_key",
    "embed_texts",
    "gpu_available",
    "knowledge_metrics",
    "load_embeddings",
    "load_index",
    "positive_mask",
    "resolve_model_path",
    "save_embeddings",
    "save_index",
    "search",
]
