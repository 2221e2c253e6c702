#!/bin/sh
# One image, several jobs: the first argument names the job, the rest go to its command line.
# Each job is exec'd: it replaces this shell, so docker's stop signal reaches it directly.
set -eu

usage() {
    cat <<'EOF'
usage: docker run [OPTIONS] IMAGE [JOB] [ARGS...]

jobs:
  serve            the search API and page on port 8000 (default); settings from TPS_* variables
  train ARGS...    python -m training train ARGS (under torchrun when NPROC_PER_NODE > 1)
  evaluate ARGS... python -m training evaluate ARGS
  export ARGS...   python -m training export ARGS
  index ARGS...    python -m index ARGS (build, add, remove, info, search, rebuild, migrate,
                   footage)
  keys ARGS...     python -m service keys ARGS (create, list, revoke): the API's keys
  audit ARGS...    python -m service audit ARGS (export): the audit trail
  retention ARGS.. python -m service retention ARGS: remove images past TPS_RETENTION_DAYS
  help             this message

Each job's --help lists its arguments, e.g. `train --help`, `index build --help`.
EOF
}

job="${1:-serve}"
[ "$#" -gt 0 ] && shift

case "$job" in
    serve)
        exec python -m service --host 0.0.0.0 --port 8000 "$@"
        ;;
    train)
        # One process per GPU on this host; torchrun sets RANK/WORLD_SIZE/LOCAL_RANK, which
        # training/runtime.py reads. "gpu" means one per visible GPU.
        nproc="${NPROC_PER_NODE:-1}"
        case "$nproc" in
            "" | 1)
                exec python -m training train "$@"
                ;;
            gpu | [2-9] | [1-9][0-9])
                exec torchrun --standalone --nproc-per-node "$nproc" -m training train "$@"
                ;;
            *)
                echo "NPROC_PER_NODE must be a number of processes (1-99) or 'gpu', not '$nproc'" >&2
                exit 64
                ;;
        esac
        ;;
    evaluate | export)
        exec python -m training "$job" "$@"
        ;;
    index)
        exec python -m index "$@"
        ;;
    keys | audit | retention)
        exec python -m service "$job" "$@"
        ;;
    help | -h | --help)
        usage
        ;;
    *)
        echo "unknown job '$job'" >&2
        usage >&2
        exit 64
        ;;
esac
