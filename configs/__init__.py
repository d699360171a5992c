"""invnet.configs."""
