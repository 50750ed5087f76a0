"""Evaluation's library part: FID (clean-fid) and the other sample metrics, the DDPM bound,
the score-matching bound and dequantization (the eval mode that reports them is
pipeline/evaluate.py)."""
