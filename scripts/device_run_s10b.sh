#!/bin/bash
# ~100 s: default-mode wall and CPU per step with and without inductor's static launcher for user kernels.
export PYTHONPATH=$PWD:$PWD/scripts
for spec in "bf16 0" "int4 0" "int4 1" "int8 1"; do
  set -- $spec
  TORCHINDUCTOR_STATIC_LAUNCH_USER_DEFINED_TRITON_KERNELS=$2 timeout 40 python3 scripts/static_launch_check.py $1 $2 2>&1 | grep -E "static-launch|Error" | tail -2
done
