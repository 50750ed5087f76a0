"""Training's library part: the losses and their time samplers (the training loop that reads a
config and writes a run directory is pipeline/train.py)."""
from training.losses import get_loss_fn

__all__ = ['get_loss_fn']
