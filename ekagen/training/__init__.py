"""The shared training engine (loop, DDP, checkpoints, resume) and its losses.

Submodules are imported explicitly (``from ekagen.training.engine import Trainer``), so a
stage depends only on the modules it uses.
"""
