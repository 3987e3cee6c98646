#!/usr/bin/env bash
# Installs what is needed (once), then trains. With no arguments: the MNIST-1D CNN, the embedded
# default, into runs/mnist1d_cnn. Arguments go to scripts/train.py, e.g.
#   ./scripts/train.sh --config=configs/cifar10.py --workdir=runs/cifar10 --config.loss.label_smoothing=0.1
source "$(dirname "${BASH_SOURCE[0]}")/_ensure_env.sh"
if [[ $# -eq 0 ]]; then
  set -- --config=configs/mnist1d.py --workdir=runs/mnist1d_cnn
fi
exec "$PYTHON" scripts/train.py "$@"
