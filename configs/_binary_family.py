"""The binary-task recipe (one sigmoid output), shared by configs/binary_synthetic.py and
configs/breast_cancer.py: the MLP, Adam 1e-3, 1000 steps, the last 10% of train held out for
calibration and threshold tuning."""
import ml_collections

from configs import default


def get_config(dataset: str, *, batch_size: int, eval_batch_size: int,
               runlocal: bool) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.name = dataset
  config.data.train_split = "train[:90%]"
  config.data.validation_split = "train[90%:]"
  config.num_classes = 1  # One logit: P(y = 1) = sigmoid(logit).
  config.model.name = "mlp"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.batch_size = batch_size
  config.eval_batch_size = eval_batch_size
  config.num_steps = 1000
  config.log_every_steps = 100
  config.eval_every_steps = 250
  config.checkpoint_every_steps = 500
  if runlocal:
    config.num_steps = 20
    config.log_every_steps = 10
    config.eval_every_steps = 10
  return config
