"""Training: DSM losses, checkpoints and the training loop."""
from training.losses import get_loss_fn
from training.trainer import Trainer, train

__all__ = ['Trainer', 'get_loss_fn', 'train']
