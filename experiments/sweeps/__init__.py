"""Sweep files for experiments/sweep.py (installed as bert4rec_jax.experiments.sweeps)."""
