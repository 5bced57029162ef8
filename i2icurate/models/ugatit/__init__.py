"""U-GAT-IT networks (CAM generator with AdaILN, CAM discriminator with spectral norm) and their losses."""

from i2icurate.models.ugatit.networks import ILN, AdaILN, Discriminator, ResnetGenerator, SpectralNorm, fit_layers

__all__ = ["ILN", "AdaILN", "Discriminator", "ResnetGenerator", "SpectralNorm", "fit_layers"]
