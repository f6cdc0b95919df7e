"""Data sources, report cleaning, vocabulary, image cache and the phantom renderer."""
