"""The online temporal detector: noisy per-frame scores in, hazard events out."""
