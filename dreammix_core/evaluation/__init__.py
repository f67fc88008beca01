"""Evaluation (paper §4): CLIP-T, CLIP-I and DINO scores of a result against the subject photos."""
