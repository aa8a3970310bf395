"""s5lra: S5 state space layers on the Long Range Arena (JAX/Flax, Hydra)."""

__version__ = "0.1.0"
