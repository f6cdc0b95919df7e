"""DiagnosisBot's data, metrics, thresholds and figures (the ``classifier`` stage's logic)."""
