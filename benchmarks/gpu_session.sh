#!/usr/bin/env bash
# The GPU checks and measurements of benchmarks/README.md in one run, for a GPU machine lent for
# minutes: the CUDA tests, the plasticity step against the bandwidth bound, W1 on the grid,
# W1's compiled rows, W3; profile_step.py (where a step's kernel time goes) when STAGES names it. Each stage has its own time limit, so one that hangs costs only itself.
#
#   bash benchmarks/gpu_session.sh [RESULTS]    # logs and JSON in out/gpu/, packed into RESULTS/gpu.tgz after each stage
#
# It runs with whatever python3 holds torch with CUDA; packages missing there (norse, nir, nirtorch,
# spikingjelly, mlxtend: pure Python) can be put in .gpu_site/, which goes first on PYTHONPATH.
set -u
out=out/gpu
pack=${1:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/.gpu_site:$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
py=${PYTHON:-python3}
stages=${STAGES:-gpu_tests plasticity w1 w1_compiled w3}  # a subset: STAGES="w1 w3"
stage() {  # stage NAME SECONDS COMMAND...: run, keep the log, note the exit status
    local name=$1 limit=$2
    shift 2
    case " $stages " in *" $name "*) ;; *) return ;; esac
    echo "=== $name (limit ${limit}s)"
    local start=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    tail -n 40 "$out/$name.log"
    echo "=== $name: exit $rc after $((SECONDS - start))s"
    [ -z "$pack" ] || tar czf "$pack/gpu.tgz" -C out gpu  # after each stage: a later one may be cut off
}
{ $py -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv; } > "$out/env.log" 2>&1
cat "$out/env.log"
stage gpu_tests 80 $py -m pytest -q -m gpu -p no:cacheprovider tests/test_cuda_graphs.py tests/test_engine.py
stage plasticity 80 $py benchmarks/w1_plasticity.py --sizes 4096,16384 --replicas 1,32 --out "$out"
stage w1 260 $py benchmarks/w1_stdp.py --device cuda --sizes 1024,4096,16384 --replicas 1,32,256 \
    --rows dense,graphs,graphs-compiled --out "$out"
stage profile 60 $py benchmarks/profile_step.py --n 4096 --replicas 32
stage w1_compiled 100 $py benchmarks/w1_stdp.py --device cuda --sizes 4096 --replicas 32,256 --rows compiled,graphs-compiled \
    --out "$out/compiled"
stage w3 70 $py benchmarks/w3_softhebb.py --device cuda --threads 8 --out "$out"
