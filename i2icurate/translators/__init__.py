"""Image-to-image translators between two domains, one module per model, found by name (see base.py)."""
