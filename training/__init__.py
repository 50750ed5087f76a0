"""Training: DSM losses, checkpoints and the training loop."""
from training.checkpoint import CheckpointError, restore_for_inference
from training.losses import get_loss_fn
from training.trainer import Trainer, train

__all__ = ['CheckpointError', 'Trainer', 'get_loss_fn', 'restore_for_inference', 'train']
