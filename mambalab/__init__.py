"""mambalab: train Mamba language models, composed with Hydra, resumable, fast."""

__version__ = "0.1.0"
