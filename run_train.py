"""Train: `python run_train.py [experiment=lra/listops] [key=value ...]` (configs/train.yaml).

With no arguments it runs the `demo` experiment. `--cfg job` prints the composed config. `-m` sweeps, on any
launcher (`hydra/launcher=slurm|local`, configs/hydra/launcher/); one job's failure is recorded in its run
directory and does not end the sweep, which ends with a summary. The return value, the best validation
accuracy, is what `hparams_search=lra_optuna` maximises. The job itself: s5lra.train.launch.
"""

import faulthandler
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from s5lra.train.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from s5lra.train.launch import run_job

    return run_job(cfg)


if __name__ == "__main__":
    from s5lra.train.launch import check_command_line

    faulthandler.enable()  # a fatal signal (e.g. SIGBUS from a data file cut short under the run) says where
    if problem := check_command_line(sys.argv[1:], Path(__file__).parent / "configs"):
        sys.exit(f"error: {problem}")
    main()
