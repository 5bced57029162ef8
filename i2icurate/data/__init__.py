"""Reading the user's image folder: scanning, decoding, caching, augmentation, labels and demo data."""
