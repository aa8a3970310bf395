"""Evaluate a run's checkpoint: `python run_eval.py run_dir=<dir> [split=test] [checkpoint=best|last]
[model.ssm.step_rescale=...]` (configs/eval.yaml). Prints the metrics JSON and writes it into the run."""

import json

import hydra
from omegaconf import DictConfig, OmegaConf

from s5lra.train.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    from s5lra.train import ConfigError, errors_to_exit, evaluate_run

    with errors_to_exit():
        if OmegaConf.is_missing(cfg, "run_dir"):
            raise ConfigError("run_dir is required: python run_eval.py run_dir=<a training run's output folder>")
        print(json.dumps(evaluate_run(OmegaConf.to_object(cfg)), indent=2))


if __name__ == "__main__":
    main()
