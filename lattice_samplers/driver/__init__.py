"""The chain driver: run settings, the block loop, checkpoints and signals, run results."""
