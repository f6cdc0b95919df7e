"""Expert knowledge base: report embeddings, PKS centres, RKS reports and the IEK lookup.

Pipeline (each step one DVC stage): :func:`embed_texts` the training reports ->
:func:`build_index` over them -> :func:`build_pks` (centres per observation and per label
combination) -> :func:`build_rks` (nearest real report carrying each key) ->
:class:`KnowledgeBase` turns diagnosed labels into knowledge token ids.

Submodules are imported explicitly (``from ekagen.knowledge.pks import build_pks``), so a
stage depends only on the modules it uses.
"""
