"""invnet.agents."""
