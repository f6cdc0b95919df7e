"""Report metrics: natural-language generation (pycocoevalcap) and clinical efficacy (CE)."""
