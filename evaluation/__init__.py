"""invnet.evaluation."""
