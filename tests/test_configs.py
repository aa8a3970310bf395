"""Hydra configs: every experiment composes and equals the paper's table; the schema rejects bad keys/types."""

import re
import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from s5lra.train import ConfigError, TrainConfig, train
from s5lra.train.config import run_stamp

from helpers import REPO, compose_cfg


# docs/s5.md, section 9 "Paper settings per task" (the official run scripts)
PAPER = {
    #            L  H    P    J   batch ep   ssm_lr  lr      wd    drop  groups            dt_g   C_init                   act          dt_min bn    clip   warm seed
    "listops":   (8, 128, 16, 8, 50, 40, 1e-3, 3e-3, 0.04, 0.0, "BfastandCdecay", False, "lecun_normal", "half_glu2", 1e-3, 0.95, False, 1, 6554595),
    "text":      (6, 256, 192, 12, 50, 35, 1e-3, 4e-3, 0.07, 0.1, "standard", True, "lecun_normal", "half_glu2", 1e-3, 0.95, False, 0, 8825365),
    "retrieval": (6, 128, 256, 16, 32, 20, 1e-3, 2e-3, 0.05, 0.0, "standard", True, "trunc_standard_normal", "half_glu1", 1e-3, 0.95, False, 1, 5464368),
    "image":     (6, 512, 384, 3, 50, 250, 1e-3, 4.5e-3, 0.07, 0.1, "BfastandCdecay", False, "lecun_normal", "half_glu1", 1e-3, 0.95, True, 1, 16416),
    "pathfinder": (6, 192, 256, 8, 64, 200, 9e-4, 4.5e-3, 0.03, 0.05, "standard", False, "trunc_standard_normal", "half_glu1", 1e-3, 0.9, False, 1, 8180844),
    "pathx":     (6, 128, 256, 16, 32, 75, 6e-4, 1.8e-3, 0.06, 0.0, "BandCdecay", False, "complex_normal", "half_glu1", 1e-4, 0.9, False, 1, 6429262),
}  # fmt: skip


@pytest.mark.parametrize("task", sorted(PAPER))
def test_experiment_matches_the_paper(task):
    cfg = OmegaConf.to_object(compose_cfg([f"experiment=lra/{task}"]))
    L, H, P, J, batch, epochs, ssm_lr, lr, wd, drop, groups, dt_global, c_init, act, dt_min, bn, clip, warm, seed = PAPER[task]
    m, s, o, t = cfg.model, cfg.model.ssm, cfg.optimizer, cfg.trainer
    assert (m.n_layers, m.d_model, s.state_size, s.blocks) == (L, H, P, J)
    assert (t.batch_size, t.epochs, cfg.scheduler.warmup_epochs, cfg.seed) == (batch, epochs, warm, seed)
    assert (o.ssm_lr, o.lr, o.weight_decay, m.dropout) == (ssm_lr, lr, wd, drop)
    assert (o.groups, o.dt_global, s.C_init, m.activation) == (groups, dt_global, c_init, act)
    assert (s.dt_min, s.dt_max, m.bn_momentum, s.clip_eigs) == (dt_min, 0.1, bn, clip)
    # All tasks: bidirectional, BatchNorm, prenorm, ZOH, conj_sym, mean pooling; official quirks as defaults.
    assert (s.bidirectional, m.norm, m.prenorm, s.discretization, s.conj_sym, m.pooling) == (
        True, "batch", True, "zoh", True, "mean")
    assert m.unroll_layers  # ours, speed only: the step experiments/bench/README.md reports
    assert m.mask_padding is False  # the official code's padding leak, which the paper's numbers came with
    assert (o.norm_decay, o.grad_clip, cfg.scheduler.first_step_full_lr, cfg.scheduler.cosine_from_global_step,
            cfg.scheduler.lr_min) == (True, None, True, True, 0.0)
    assert cfg.dataset.name == task and cfg.name == f"lra/{task}"


def test_demo_is_the_default_and_generates_its_data():
    cfg = compose_cfg()
    assert cfg.name == "demo" and cfg.dataset.name == "listops"
    assert cfg.dataset.generate.n_train > 0 and cfg.dataset.root == "data/listops_demo"
    assert cfg.dataset.max_len >= cfg.dataset.generate.max_length


def test_every_design_key_has_a_default():
    cfg = compose_cfg()
    keys = """seed paths.data_dir dataset.name dataset.root model.n_layers model.d_model model.dropout model.prenorm
        model.norm model.bn_momentum model.activation model.pooling model.ssm.state_size model.ssm.blocks
        model.ssm.conj_sym model.ssm.bidirectional model.ssm.C_init model.ssm.discretization model.ssm.dt_min
        model.ssm.dt_max model.ssm.clip_eigs model.ssm.step_rescale model.ssm.scan optimizer.lr optimizer.ssm_lr
        optimizer.weight_decay optimizer.groups optimizer.dt_global scheduler.warmup_epochs scheduler.lr_min
        trainer.batch_size trainer.epochs trainer.max_steps trainer.resume logger.mode logger.project""".split()
    for key in keys:
        assert OmegaConf.select(cfg, key, throw_on_missing=True, default="absent") != "absent", key


def test_hydra_run_dir_and_no_chdir():
    hcfg = compose_cfg(["experiment=lra/image"], return_hydra_config=True).hydra
    assert hcfg.job.chdir is False
    assert OmegaConf.to_container(hcfg.run)["dir"] == "outputs/${name}/${s5lra_stamp:}"
    assert OmegaConf.to_container(hcfg.sweep)["subdir"] == "${hydra.job.num}"


def test_run_directories_of_simultaneous_starts_differ():
    """Date, time to the millisecond and a random suffix: starts within one millisecond still differ."""
    stamps = [run_stamp() for _ in range(200)]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.\d{3}-[0-9a-f]{8}", s) for s in stamps)
    assert len(set(stamps)) == len(stamps)
    cfg = compose_cfg(return_hydra_config=True)
    assert cfg.hydra.run.dir == cfg.hydra.run.dir  # one value per composed config (the resolver is cached)


@pytest.mark.parametrize("override, words", [
    ("optimizer.lrr=0.1", ["optimizer.lrr"]),
    ("model.ssm.state_sise=8", ["model.ssm.state_sise"]),
    ("trainer.batch_size=fifty", ["trainer.batch_size", "fifty"]),
    ("model.prenorm=maybe", ["model.prenorm"]),
])
def test_bad_keys_and_types_name_the_key(override, words):
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg([override])
    text = f"{err.value} {err.value.__cause__}"
    assert all(w in text for w in words), text


def test_bad_values_fail_before_any_data_is_read(tmp_path):
    root = tmp_path / "nothing_here"
    for override, key in [("optimizer.groups=fastB", "optimizer.groups"), ("model.norm=group", "model.norm"),
                          ("trainer.batch_size=0", "trainer.batch_size"), ("logger.mode=sometimes", "logger.mode"),
                          ("model.ssm.scan=foo", "model.ssm.scan='foo'"),
                          ("model.ssm.state_size=33", "model.ssm.state_size=33: must divide by blocks"),
                          ("model.ssm.blocks=3", "model.ssm.state_size=32: must divide by blocks=3"),
                          ("model.ssm.state_size=6", "model.ssm.state_size=6: state_size/blocks must be even"),
                          ("model.dropout=1.5", "model.dropout=1.5: must lie in"),
                          ("dataset.max_len=1", "dataset.max_len=1"), ("dataset.name=mnist", "dataset.name='mnist'"),
                          ("model.ssm.dt_min=0.5", "model.ssm.dt_min=0.5"),
                          ("optimizer.lr=0", "optimizer.lr=0"), ("trainer.precision=fp8", "trainer.precision='fp8'"),
                          ("scheduler.warmup_epochs=50", "scheduler.warmup_epochs=50")]:
        cfg = OmegaConf.to_object(compose_cfg([override, f"dataset.root={root}", "logger=none"]))
        with pytest.raises(ConfigError, match=re.escape(key)):
            train(cfg, tmp_path / "run")
    assert not root.exists() and not (tmp_path / "run").exists()  # nothing generated, read or written


def test_a_bad_value_is_one_line_on_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "run_train.py"), "model.ssm.scan=foo",
                           f"paths.data_dir={tmp_path}", "logger=none", f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: model.ssm.scan='foo': expected one of ['auto', 'associative', 'sequential', 'chunked', "
        "'checkpointed', 'pallas']")
    assert "Traceback" not in proc.stderr


def test_eval_config_schema():
    cfg = OmegaConf.to_object(compose_cfg(["run_dir=/x", "model.ssm.step_rescale=2.0"], config="eval"))
    assert (cfg.split, cfg.checkpoint, cfg.model.ssm.step_rescale, cfg.model.ssm.scan) == ("test", "best", 2.0, None)
    with pytest.raises(ConfigCompositionException):
        compose_cfg(["run_dir=/x", "model.d_model=3"], config="eval")


def test_a_bad_eval_override_names_the_key_before_any_data_is_read(tmp_path):
    from s5lra.train.evaluate import evaluate_run

    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(compose_cfg([f"paths.data_dir={tmp_path / 'nothing_here'}"]), tmp_path / ".hydra" / "config.yaml")
    ecfg = OmegaConf.to_object(compose_cfg([f"run_dir={tmp_path}", "model.ssm.step_rescale=-1"], config="eval"))
    with pytest.raises(ConfigError, match=re.escape("model.ssm.step_rescale=-1.0: must be positive")):
        evaluate_run(ecfg)
    assert not (tmp_path / "nothing_here").exists()


def test_train_config_is_a_plain_dataclass():
    cfg = OmegaConf.to_object(compose_cfg())
    assert isinstance(cfg, TrainConfig) and cfg.trainer.resume is None


def readme_train_commands():
    """The overrides of every single-run `run_train.py` command in the README's code blocks (a sweep's `a=1,2`
    takes its first value; `--cfg` and `-m` are Hydra's flags, not overrides)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if "run_train.py" in line:
                args = line.split("#")[0].split("run_train.py", 1)[1].split()
                commands.append([a.split(",")[0] for a in args if "=" in a and not a.startswith(("hydra", "["))])
    return commands


@pytest.mark.parametrize("overrides", readme_train_commands(), ids=" ".join)
def test_the_readmes_training_commands_are_valid(overrides):
    """A README example that fails validation (it once asked for a state size its blocks cannot divide) is a wrong
    turn for every newcomer."""
    from s5lra.train.config import validate

    validate(OmegaConf.to_object(compose_cfg(overrides)))
