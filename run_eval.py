"""Evaluate a run's checkpoint: `python run_eval.py run_dir=<dir> [split=test] [checkpoint=best|last]
[model.ssm.step_rescale=...]` (configs/eval.yaml). Prints the metrics JSON and writes it into the run."""

import json

import hydra
from omegaconf import DictConfig, OmegaConf

from s5lra.train.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    from s5lra.train import errors_to_exit, evaluate_run

    with errors_to_exit():
        print(json.dumps(evaluate_run(OmegaConf.to_object(cfg)), indent=2))


if __name__ == "__main__":
    main()
