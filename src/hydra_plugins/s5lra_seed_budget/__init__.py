"""The seed-budget sweeper of s5lra (`hydra/sweeper=seed_budget`); Hydra finds it in the `hydra_plugins`
namespace package."""
