"""Grad-CAM and the Aggregate Discriminative Attention map (ADM): masks, packing, applying."""
