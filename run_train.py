"""Train: `python run_train.py [experiment=lra/listops] [key=value ...]` (configs/train.yaml).

With no arguments it runs the `demo` experiment. `--cfg job` prints the composed config; `-m` sweeps.
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from s5lra.train.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from s5lra.train import errors_to_exit, train

    with errors_to_exit():
        train(OmegaConf.to_object(cfg), HydraConfig.get().runtime.output_dir,
              config_dict=OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    main()
