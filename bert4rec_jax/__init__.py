"""BERT4Rec in JAX/Flax: data preparation, pmap training, evaluation and inference."""

__version__ = "0.1.0"
