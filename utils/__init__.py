"""Pieces every package uses: atomic writes, the device, the run directory and its
checkpoints, pictures of samples."""
