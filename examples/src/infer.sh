#!/bin/sh
echo "inference on ${CUDA_VISIBLE_DEVICES:-no GPU}"
