"""invnet.training."""
