"""TUNIT networks (guiding network E, generator G, discriminator D), their losses and the MoCo key queue."""

from i2icurate.models.tunit.discriminator import Discriminator
from i2icurate.models.tunit.generator import Generator
from i2icurate.models.tunit.guiding import GuidingNetwork
from i2icurate.models.tunit.queue import StyleQueue

__all__ = ["Discriminator", "Generator", "GuidingNetwork", "StyleQueue"]
