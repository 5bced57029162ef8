"""CUT networks (anti-aliased ResNet generator, PatchGAN discriminator, PatchSampleF head) and CUT/SRUNIT losses."""

from i2icurate.models.cut.networks import Discriminator, Generator, PatchSampleF

__all__ = ["Discriminator", "Generator", "PatchSampleF"]
