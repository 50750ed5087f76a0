"""Evaluation: FID (clean-fid), bits/dim by the probability-flow ODE, the DDPM bound, reports."""
from evaluation.evaluate import evaluate

__all__ = ['evaluate']
