"""Training: DSM losses, checkpoints and the training loop."""
