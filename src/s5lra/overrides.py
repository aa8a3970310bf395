"""Which command-line overrides change what a run computes, and a short stable label naming them.

Hydra records a run's overrides in `<run>/.hydra/overrides.yaml` as "key=value" strings (`seed=1`,
`experiment=lra/listops`, `model.n_layers=4`, `+group=x`, `~key`). Runs of one experiment are the same setting
exactly when their semantic overrides are equal; only such runs are seeds of one another.

Not semantic (they do not change what is trained or how its result is chosen): `seed` (what seeds vary),
`experiment` and `name` (the grouping key itself), `paths.*`, `dataset.root`, `logger.*`, `hydra.*` (where
files and logs go; the data's identity is the run's recorded fingerprint, not its folder),
`trainer.progress`, `trainer.log_every`, `trainer.checkpoint_every` (how often something is shown or saved),
`trainer.resume` (continuing a run is the same run), `trainer.eval_batch_size` (every example is evaluated
once whatever the batch), `trainer.distributed` (the same computation over several hosts), `trainer.estimate*`
(an estimate trains nothing) and `trainer.stop_if_stuck` with its `trainer.stuck_*` settings (they stop only
seeds that have not left chance, whose recorded outcome stays in the seed counts and means: docs/stuck-seeds.md).
Everything else is semantic, unknown keys included: model.*, dataset.*, optimizer.*, scheduler.*,
trainer.epochs, trainer.batch_size, trainer.precision, and trainer.eval_every (more evaluations give the
best-validation pick, and so the reported test accuracy, more chances). trainer.max_steps is semantic and
also makes a run partial (PARTIAL_KEYS): it stops before the schedule ends, so it is never compared with the
paper.
"""

from __future__ import annotations

import hashlib

NON_SEMANTIC_GROUPS = ("paths", "logger", "hydra")
NON_SEMANTIC_KEYS = ("seed", "experiment", "name", "dataset.root", "trainer.progress", "trainer.log_every",
                     "trainer.checkpoint_every", "trainer.resume", "trainer.eval_batch_size", "trainer.distributed",
                     "trainer.estimate", "trainer.estimate_steps", "trainer.stop_if_stuck", "trainer.stuck_after_epochs",
                     "trainer.stuck_margin")
PARTIAL_KEYS = ("trainer.max_steps",)
MAX_LABEL = 100  # W&B group names allow 128 characters; room for "<experiment>/"
LONG_VALUE = 24  # a dict value longer than this is shortened in labels


def override_key(override: str) -> str:
    """The config key of one override: `+model.x=1` -> `model.x`, `~trainer.max_steps` -> `trainer.max_steps`."""
    return override.lstrip("+~").split("=", 1)[0].strip()


def is_semantic(override: str) -> bool:
    key = override_key(override)
    return key not in NON_SEMANTIC_KEYS and key.split(".", 1)[0] not in NON_SEMANTIC_GROUPS


def semantic_overrides(overrides: list[str]) -> list[str]:
    """The overrides that change what a run computes (see the module docstring), sorted by key."""
    return sorted((o.strip() for o in overrides if is_semantic(o)), key=lambda o: (override_key(o), o))


def partial_overrides(overrides: list[str]) -> list[str]:
    """The overrides that stop a run before its schedule ends (trainer.max_steps=N)."""
    return [o for o in semantic_overrides(overrides) if override_key(o) in PARTIAL_KEYS and not o.startswith("~")
            and not o.endswith(("=null", "=None"))]


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _shortened(override: str) -> str:
    """One override as a label shows it: a data path by its last folder, a long dict value by its start; each
    shortened value ends with a hash of the whole, so different values keep different labels."""
    key, sep, value = override.partition("=")
    if sep and value.startswith("{") and len(value) > LONG_VALUE:
        return f"{key}={value[:LONG_VALUE - 8]}...~{_digest(value, 6)}"
    if sep and "/" in value and override_key(override).startswith("dataset."):
        return f"{key}=.../{value.rstrip('/').rsplit('/', 1)[-1]}~{_digest(value, 6)}"
    return override


def overrides_label(overrides: list[str], max_len: int | None = MAX_LABEL) -> str:
    """A short stable string for run names, groups and report rows: the semantic overrides joined by commas,
    the model's first and in full, e.g. "model.n_layers=1,dataset.generate={n_train:64,n_...~1a2b3c,
    optimizer.lr=0.001"; empty when there are none. Only data paths and long dict values are shortened; a label
    still longer than `max_len` (W&B names and file names; None for none) is cut at the end with a hash of the
    whole, so different settings keep different labels."""
    ordered = sorted(semantic_overrides(overrides), key=lambda o: not override_key(o).startswith("model."))
    label = ",".join(_shortened(o) for o in ordered)
    if max_len is None or len(label) <= max_len:
        return label
    return f"{label[:max_len - 10]}~{_digest(label, 8)}"
