#!/usr/bin/env bash
# The GPU measurements of capsim on one NVIDIA GPU machine, in stages (benchmarks/gpu/README.md).
#
#   bash benchmarks/gpu/run_on_device.sh measure            # environment, profiles, telemetry smoke run, capacities
#   bash benchmarks/gpu/run_on_device.sh grid cnn           # capacity, then load tests at 30/50/70/90% of it
#   bash benchmarks/gpu/run_on_device.sh grid mlp [CAPACITY_RPS]
#
# Results go to $OUT (default /tmp/capsim-gpu-out) as a few files only — a log per stage and
# tarballs refreshed after every step, so a run cut short still returns what it measured:
#   measure: measure.log, profiles.tar.gz (scenarios/profiles/*-h100*.json), smoke.tar (run folder),
#            capacity.json, logs-measure.tar.gz
#   grid:    grid-MODEL.log, capacity-MODEL.json, logs-grid-MODEL.tar.gz and the run folders in four
#            tarballs, runs-MODEL-wW-{low,high}.tar (u30+u50, u70+u90): one tarball per model held
#            the MLP's 8 folders in 32 MB, over the 16 MiB a returned file may have.
#
# Needs: python3 with torch (CUDA) and nvidia-ml-py; the other dependencies either installed or
# carried as wheels in .whl/ (installed with --target /tmp/site, as the lent GPU machines need).
set -u
cd "$(dirname "$0")/../.."
REPO=$PWD
OUT=${OUT:-/tmp/capsim-gpu-out}
WORK=${CAPSIM_GPU_WORK:-/tmp/capsim-gpu-work}
mkdir -p "$OUT" "$WORK/logs"
export PYTHONUNBUFFERED=1
DEVICE=${CAPSIM_GPU_DEVICE:-cuda}  # cpu: a dry run of this script on a machine without a GPU

if [ -z "${CAPSIM_GPU_NO_WHEELS:-}" ] && [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    if [ ! -f /tmp/site/.capsim-wheels ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl || { echo "wheel install failed"; exit 1; }
        touch /tmp/site/.capsim-wheels
    fi
    export PYTHONPATH=$REPO:/tmp/site
else
    export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
fi

capsim() { python3 -m capsim.cli.main "$@"; }

# Copy $2 (a file or folder under $WORK) into $OUT/$1 atomically: a tarball cut mid-write would be lost.
publish_tar() {
    local name=$1; shift
    local flags=-cf
    case $name in *.gz) flags=-czf ;; esac
    tar $flags "$OUT/.$name.tmp" -C "$WORK" "$@" 2>/dev/null && mv "$OUT/.$name.tmp" "$OUT/$name"
}

ready() { python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; }

SERVER_PID=
# start_server PORT LOGNAME FLAGS...: `capsim serve` in the background, wait until it is ready.
start_server() {
    local port=$1 name=$2; shift 2
    python3 -m capsim.cli.main serve --port "$port" --device "$DEVICE" --queue-capacity 4096 "$@" \
        >"$WORK/logs/server-$name.out" 2>"$WORK/logs/server-$name.err" &
    SERVER_PID=$!
    local i
    for i in $(seq 1 600); do
        ready "http://127.0.0.1:$port/v2/health/ready" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "server $name exited"; tail -20 "$WORK/logs/server-$name.err"; return 1; }
        sleep 0.2
    done
    echo "server $name not ready after 120 s"; return 1
}
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}

environment() {
    echo "== environment ($(date -u +%FT%TZ))"
    nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm --format=csv
    nproc; uname -r
    python3 - <<'EOF'
import importlib.metadata as md, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version(), "device", torch.cuda.get_device_name(0))
for name in ("nvidia-ml-py", "locust", "gevent", "pydantic", "simpy", "fastapi", "uvicorn", "numpy", "pandas", "pyarrow"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} MISSING")
import capsim, reference_server.hardware as hw
print("hardware record:", hw.describe("cuda", 1))
EOF
    capsim --help >/dev/null && echo "capsim CLI ok"
}

# Timing window of the profiles: the first H100 profiles used 0.3 s (most sizes converged, some not
# within 12 windows); the float32 ones were then measured again with 1 s.
PROFILE_WINDOW_S=${CAPSIM_GPU_PROFILE_WINDOW_S:-0.3}

profiles() {
    echo "== profiles ($(date -u +%FT%TZ))"
    mkdir -p "$WORK/profiles"
    local model dtype suffix
    for model in mlp cnn transformer; do
        for dtype in ${CAPSIM_GPU_PROFILE_DTYPES:-float32 float16 bfloat16}; do
            case $dtype in float32) suffix= ;; float16) suffix=-fp16 ;; bfloat16) suffix=-bf16 ;; esac
            timeout 150 python3 -m capsim.cli.main profile --model "$model" --device "$DEVICE" --dtype "$dtype" \
                --batch-sizes 1,2,4,8,16,32,64 --window-s "$PROFILE_WINDOW_S" --warmup-s "$PROFILE_WINDOW_S" --max-windows 12 \
                -o "$WORK/profiles/$model-h100$suffix.json" || echo "profile $model $dtype failed: $?"
            publish_tar profiles.tar.gz profiles
        done
    done
}

smoke() {
    echo "== telemetry smoke run: cnn, max batch 32, 2 ms window, 50 req/s ($(date -u +%FT%TZ))"
    start_server 18100 smoke --model cnn --max-batch-size 32 --max-wait-ms 2 || return 1
    python3 -c "import urllib.request; t = urllib.request.urlopen('http://127.0.0.1:18100/metrics').read().decode(); print('\n'.join(l for l in t.splitlines() if l.startswith(('refserver_gpu', 'refserver_nvml'))))"
    timeout 90 python3 -m capsim.cli.main loadtest --target http://127.0.0.1:18100 --model cnn --rate 50 \
        --duration 20 --warmup 4 --seed 1 --out "$WORK/smoke/cnn-r50" --json >"$WORK/smoke-summary.json"
    stop_server
    python3 benchmarks/gpu/inspect_run.py "$WORK/smoke/cnn-r50"
    publish_tar smoke.tar smoke
}

# closed_loop MODEL MAX_BATCH NAME SERVER_FLAGS...: 64 closed-loop users for 15 s against a fresh server,
# greedy batching: the throughput it sustains when it is never idle. Summary in $WORK/capacity/NAME.json.
CLOSED_LOOP_PORT=18200
closed_loop() {
    local model=$1 batch=$2 name=$3; shift 3
    CLOSED_LOOP_PORT=$((CLOSED_LOOP_PORT + 1))
    local port=$CLOSED_LOOP_PORT
    mkdir -p "$WORK/capacity"
    start_server $port "cap-$name" --model "$model" --max-batch-size "$batch" --max-wait-ms 0 "$@" || return 1
    timeout 90 python3 -m capsim.cli.main loadtest --target http://127.0.0.1:$port --model "$model" \
        --closed-loop --users 64 --workers 2 --duration 15 --warmup 5 \
        --out "$WORK/capacity/$name" --json >"$WORK/capacity/$name.json"
    stop_server
    python3 benchmarks/gpu/inspect_run.py "$WORK/capacity/$name" --brief
    rm -rf "${WORK:?}/capacity/$name"  # the summary is what is kept
}

capacity_json() {
    python3 - "$WORK/capacity" <<'EOF'
import json, sys
from pathlib import Path
out = {}
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    s = json.loads(f.read_text())
    out[f.stem] = {"throughput_rps": s["throughput_rps"], "latency_ms": s["latency_ms"], "valid": s["valid"]}
print(json.dumps(out, indent=1))
EOF
}

capacity() {
    echo "== capacity (closed loop, 64 users, 2 workers, 15 s) ($(date -u +%FT%TZ))"
    local model batch
    for model in cnn mlp; do
        for batch in 32 1; do
            closed_loop $model $batch "$model-b$batch"
        done
    done
    capacity_json >"$OUT/capacity.json"
    cat "$OUT/capacity.json"
}

# The server flags of the calibration runs. 0.5 ms GIL switch interval: the executor's batches took
# far longer in the server at saturation than in the profiler (CNN: 13 ms for ~25 items against
# 0.9 ms), which looked like waiting for the GIL; the A/B (CAPSIM_GPU_AB=1) then showed no difference
# beyond noise (1917 vs 1865 req/s), but the committed runs were taken with it.
GRID_SERVER_FLAGS=${CAPSIM_GPU_SERVER_FLAGS:---switch-interval-ms 0.5}
GRID_DURATION_S=${CAPSIM_GPU_GRID_DURATION_S:-22}  # per run, warm-up included
GRID_WARMUP_S=${CAPSIM_GPU_GRID_WARMUP_S:-4}

# grid MODEL [CAPACITY_RPS]: without a capacity, measure it first (closed loop, greedy, the grid's
# server flags); then max batch 32 with a 0 and a 2 ms window, each at 30/50/70/90% of it.
grid() {
    local model=$1 cap=${2:-}
    echo "== calibration grid: $model, server flags: $GRID_SERVER_FLAGS ($(date -u +%FT%TZ))"
    if [ -n "${CAPSIM_GPU_AB:-}" ]; then  # the same capacity with Python's default switch interval
        closed_loop "$model" 32 "$model-b32-default"
    fi
    if [ -z "$cap" ]; then
        # shellcheck disable=SC2086
        closed_loop "$model" 32 "$model-b32-grid" $GRID_SERVER_FLAGS
        cap=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['throughput_rps'])" "$WORK/capacity/$model-b32-grid.json")
    fi
    capacity_json >"$OUT/capacity-$model.json"
    echo "capacity of $model: $cap req/s"
    local wait pct rate port=18300 seed=100
    [ "$model" = mlp ] && seed=200
    mkdir -p "$WORK/runs-$model"
    for wait in 0 2; do
        port=$((port + 1))
        # shellcheck disable=SC2086
        start_server $port "grid-$model-w$wait" --model "$model" --max-batch-size 32 --max-wait-ms $wait $GRID_SERVER_FLAGS || continue
        for pct in 30 50 70 90; do
            seed=$((seed + 1))
            rate=$(python3 -c "print(round($cap * $pct / 100, 1))")
            echo "-- $model max batch 32, window $wait ms, $pct% = $rate req/s"
            timeout 75 python3 -m capsim.cli.main loadtest --target http://127.0.0.1:$port --model "$model" \
                --rate "$rate" --duration "$GRID_DURATION_S" --warmup "$GRID_WARMUP_S" --workers 2 --seed $seed \
                --out "$WORK/runs-$model/$model-b32-w$wait-u$pct" >/dev/null 2>"$WORK/logs/lt-$model-w$wait-u$pct.err"
            tail -2 "$WORK/logs/lt-$model-w$wait-u$pct.err"
            python3 benchmarks/gpu/inspect_run.py "$WORK/runs-$model/$model-b32-w$wait-u$pct" --brief
            local half=low loads="30 50"
            [ "$pct" -ge 70 ] && { half=high; loads="70 90"; }
            # shellcheck disable=SC2046
            (cd "$WORK/runs-$model" && tar -cf "$OUT/.runs.tmp" $(for u in $loads; do
                [ -d "$model-b32-w$wait-u$u" ] && echo "$model-b32-w$wait-u$u"; done)) \
                && mv "$OUT/.runs.tmp" "$OUT/runs-$model-w$wait-$half.tar"
        done
        stop_server
    done
}

trap 'stop_server' EXIT
stage=${1:-measure}
case $stage in
    measure)
        { environment; profiles; smoke; capacity; } 2>&1 | tee "$OUT/measure.log"
        publish_tar logs-measure.tar.gz logs ;;
    grid)
        [ $# -ge 2 ] || { echo "usage: $0 grid MODEL [CAPACITY_RPS]" >&2; exit 2; }
        { grid "$2" "${3:-}"; } 2>&1 | tee "$OUT/grid-$2.log"
        publish_tar "logs-grid-$2.tar.gz" logs ;;
    environment|profiles|smoke|capacity) "$stage" 2>&1 | tee "$OUT/$stage.log" ;;
    *) echo "usage: $0 measure | grid MODEL [CAPACITY_RPS]" >&2; exit 2 ;;
esac
