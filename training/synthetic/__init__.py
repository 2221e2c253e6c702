"""The synthetic pedestrian set: rendered identities with captions, in CUHK-PEDES format.

Apart from the benchmark loaders (training/data) because it is a generator, not a reader: it
makes data the tests, the demo and the accuracy benchmark use when no real data set is at hand.
"""

from training.synthetic.generate import generate, main

__all__ = ["generate", "main"]
