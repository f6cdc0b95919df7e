"""Neural models: the report generator's parts and the DiagnosisBot classifier.

Submodules are imported explicitly (``from ekagen.models.classifier import build_classifier``)
so that importing one model never pulls in the others.
"""
