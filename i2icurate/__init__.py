"""i2icurate: discover pseudo-domains in an unlabeled image folder, review them, translate between them."""

__version__ = "0.1.0"
