"""invnet: learn to balance inventory across a network of warehouses, DCs and stores."""

__version__ = "0.1.0"
