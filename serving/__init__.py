"""invnet.serving."""
