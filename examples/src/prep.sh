#!/bin/sh
echo "preparing data in ${GPURUN_RUN_DIR:-.}"
