"""Training engine pieces: distributed set-up, DeepSpeed construction, data order, checkpoints, metrics."""
