#!/usr/bin/env bash
# One command that checks the pack on a CUDA GPU and prints one summary block.
#
#   COMFYUI_PATH=/opt/ComfyUI benchmarks/gpu_check.sh [OUT_DIR]
#
# On a GPU (goal: under 8 minutes once the models are built; they are cached for the next run):
#   1. the ComfyUI tier's inference and training tests with ComfyUI on the GPU (DREAMMIX_TEST_DEVICE=cuda);
#   2. inference_overhead.py (DreamMix Inpaint against plain KSampler inpainting) and training_cost.py (against
#      ComfyUI's TrainLoraNode) on a real-shaped random SDXL at 1024 px and on Klein 4B's whole DiT (random
#      weights, CLIP-L context) at 1024 px;
#   3. peak VRAM (nvidia-smi, the whole check; and each benchmark's peak allocated), steps per second;
#   4. a search of every log of the run (test servers' included) for device-mismatch errors.
# Without CUDA (or with DREAMMIX_CHECK_DEVICE=cpu) the same steps run on CPU with the tiny test models, a few
# tests and 2 steps: the fallback that proves the script itself works on a machine without a GPU.
#
# Environment: COMFYUI_PATH (required) a prepared ComfyUI checkout (README, Tests); COMFYUI_PYTHON the python
# that runs it (default: its .venv); PYTHON the python with the pack's test extras that runs pytest (default:
# this repo's .venv); DREAMMIX_TEST_CACHE the model cache (default ~/.cache/dreammix-tests).
# Exit status 0 only when the tests passed, every benchmark printed its RATIO and no device mismatch was found.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
: "${COMFYUI_PATH:?set COMFYUI_PATH to a prepared ComfyUI checkout}"
COMFYUI_PATH=$(realpath "$COMFYUI_PATH")
COMFYUI_PYTHON=${COMFYUI_PYTHON:-$COMFYUI_PATH/.venv/bin/python}
PYTHON=${PYTHON:-$PWD/.venv/bin/python}
out=$(realpath -m "${1:-$(mktemp -d -t dreammix-gpu-check-XXXX)}")
mkdir -p "$out"
models=${DREAMMIX_TEST_CACHE:-$HOME/.cache/dreammix-tests}/gpu-check
mkdir -p "$models"
export COMFYUI_PATH COMFYUI_PYTHON

device=${DREAMMIX_CHECK_DEVICE:-$("$COMFYUI_PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
if [ "$device" = cuda ]; then
    checkpoints=(tiny_sd15 fullsize_sdxl)
    klein=(--benchmark-klein 4b)
    klein_model=bench_flux2_klein4b
    tests=(tests/comfy/test_flux.py tests/comfy/test_variations.py tests/comfy/test_gch_window.py
        tests/comfy/test_progress.py tests/comfy/test_quick_start.py tests/comfy/test_training.py
        tests/comfy/test_klein_workflow.py tests/comfy/test_qwen_z_image.py)
    sdxl=(--ckpt fullsize_sdxl.safetensors --size 1024)
    inference=("sdxl:${sdxl[*]} --steps 20 --cfg 5 --repeats 2" "klein:KLEIN --size 1024 --steps 4 --cfg 1 --scheduler simple --repeats 2")
    training=("sdxl:${sdxl[*]} --steps 10 --gradient-checkpointing" "klein:KLEIN --size 1024 --steps 10 --gradient-checkpointing")
else
    checkpoints=(tiny_sd15)
    klein=()
    klein_model=tiny_flux2
    tests=(tests/comfy/test_gch_window.py tests/comfy/test_flux.py::test_flux_inpaint_keeps_background_exact
        tests/comfy/test_training.py::test_flux_lora_is_saved_under_kohya_flux_keys_and_round_trips)
    inference=("sd15:--ckpt tiny_sd15.safetensors --size 256 --steps 2 --repeats 1" "klein:KLEIN --size 128 --steps 2 --cfg 1 --scheduler simple --repeats 1")
    training=("sd15:--ckpt tiny_sd15.safetensors --size 128 --steps 2" "klein:KLEIN --size 128 --steps 2 --gradient-checkpointing")
fi
klein_files="--unet $models/diffusion_models/$klein_model.safetensors --vae $models/vae/tiny_flux2_vae.safetensors \
--clip $models/tiny_sd15.safetensors --clip-type checkpoint"

summary=()
failed=0
note() { summary+=("$(printf '%-16s %s' "$1" "$2")"); }
field() { grep -h "^$1 " "$2" | tail -n 1 | cut -d' ' -f2-; }  # NAME LOG: the script line NAME's values

started=$SECONDS
"$COMFYUI_PYTHON" tests/comfy/make_checkpoints.py --comfyui "$COMFYUI_PATH" "$models" "${checkpoints[@]}" \
    > "$out/models.log" 2>&1 || failed=1
if [ ! -f "$models/diffusion_models/$klein_model.safetensors" ]; then
    "$COMFYUI_PYTHON" tests/comfy/make_flux_models.py "$COMFYUI_PATH" "$models" "${klein[@]}" >> "$out/models.log" 2>&1 || failed=1
fi
note models "$((SECONDS - started)) s to build or find in $models (not counted below)"

checked=$SECONDS
if [ "$device" = cuda ] && command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$out/vram.csv" &
    poller=$!
fi

DREAMMIX_TEST_DEVICE=$device "$PYTHON" -m pytest "${tests[@]}" -q -p no:cacheprovider --basetemp "$out/pytest" \
    > "$out/tests.log" 2>&1 || failed=1
note tests "$(tail -n 1 "$out/tests.log") (log $out/tests.log)"

benchmark() {  # SCRIPT LABEL:ARGUMENTS
    local script=$1 label=${2%%:*} arguments=${2#*:}
    local log="$out/${script%.py}-$label.log"
    # shellcheck disable=SC2086  # the arguments are words on purpose
    "$COMFYUI_PYTHON" "benchmarks/$script" --comfyui "$COMFYUI_PATH" --ckpt-dir "$models" \
        ${arguments/KLEIN/$klein_files} > "$log" 2>&1
    if grep -q '^RATIO ' "$log"; then
        note "${script%%_*} $label" "steps/s $(field SPEED "$log"); peak MiB $(field PEAK_MIB "$log"); $(field RATIO "$log")"
    else
        failed=1
        note "${script%%_*} $label" "FAILED: $(tail -n 1 "$log") (log $log)"
    fi
}
for run in "${inference[@]}"; do benchmark inference_overhead.py "$run"; done
for run in "${training[@]}"; do benchmark training_cost.py "$run"; done

if [ -n "${poller:-}" ]; then
    kill "$poller"
    note "peak VRAM" "$(sort -n "$out/vram.csv" | tail -n 1) MiB used on the GPU (nvidia-smi, whole check)"
else
    note "peak VRAM" "n/a on $device"
fi

mismatch='Expected all tensors to be on the same device|found at least two devices|(cuda:[0-9]+|cpu) and (cuda:[0-9]+|cpu)!'
mismatch+='|Input type \(.*\) and weight type \(.*\) should be the same|Expected (a |an )?(cuda|cpu|CUDA|CPU) tensor'
mismatch+='|device-side assert|must be on the same device'
found=$(grep -rEho "$mismatch" "$out" --include='*.log' | sort | uniq -c)
if [ -n "$found" ]; then
    failed=1
    note mismatches "$(tr '\n' ';' <<< "$found")"
else
    note mismatches "none in $(find "$out" -name '*.log' | wc -l) logs"
fi

echo "==== DreamMix GPU check: $device, $("$COMFYUI_PYTHON" -c 'import torch; print(" ".join(["torch", torch.__version__,
    *([torch.cuda.get_device_name()] if torch.cuda.is_available() else [])]))'), ComfyUI $(git -C "$COMFYUI_PATH" \
    describe --tags 2> /dev/null || echo "at $COMFYUI_PATH") ===="
printf '%s\n' "${summary[@]}"
echo "checked in $((SECONDS - checked)) s; logs in $out; $([ "$failed" = 0 ] && echo PASS || echo FAIL)"
exit "$failed"
