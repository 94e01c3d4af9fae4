#!/bin/sh
echo "training with args: $*"
for i in 1 2 3; do echo "epoch $i"; done
