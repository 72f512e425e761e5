#!/usr/bin/env bash
# Every measurement a release candidate gets before it ships, with the same commands as the README's Results,
# Performance and demo sections, but on the candidate's bundle instead of the shipped one. One after another (each
# uses both cores), about 80 minutes on 2 CPU cores; each command's output in OUT/<name>.log, the commands with
# their start times in OUT/commands.log. A step that fails stops the run and names its log. The dev step ends with
# the candidate set against the shipped model case by case (OUT/versus-shipped.log), the two healthy steps with its
# held-out false positives beside the shipped model's (OUT/versus-shipped-healthy.log, versus-shipped-heads.log;
# the shipped model's own runs of those steps are Resources/results/held-out-*.csv).
#
#     bash Resources/measure_candidate.sh training/in-progress/bundle/manifest.json runs/candidate [STEP ...]
#
# STEP: any of dev healthy heads demo phi native benchmark (default: all, in that order). Run from the
# repository root with ../shared beside it.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: bash Resources/measure_candidate.sh MANIFEST OUT [STEP ...]" >&2
    exit 2
fi
manifest=$1
out=$2
shift 2
all_steps=(dev healthy heads demo phi native benchmark)
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=("${all_steps[@]}")
for step in "${steps[@]}"; do  # every step checked before the first one runs
    if [[ " ${all_steps[*]} " != *" $step "* ]]; then
        echo "unknown step '$step'; the steps are: ${all_steps[*]}." >&2
        exit 2
    fi
done
if [[ ! -f $manifest ]]; then
    echo "no bundle manifest at $manifest; give the manifest.json of the candidate's bundle." >&2
    exit 2
fi
mkdir -p "$out"

run() {
    local name=$1
    shift
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $name: $*" >>"$out/commands.log"
    "$@" >"$out/$name.log" 2>&1 || { echo "$name failed; its output is in $out/$name.log" >&2; return 1; }
}

for step in "${steps[@]}"; do
    case $step in
    dev) run dev disanatdetect evaluate --model "$manifest" --cases ../shared/data/real --cases ../shared/data/healthy \
        --healthy-scan t1:/usr/share/mricron/templates/ch2bet.nii.gz --table-cases Brats18 --out "$out/evaluation"
        run versus-shipped python3 Resources/compare_releases.py Resources/results/results.csv \
            "$out/evaluation/results.csv" --names shipped,candidate ;;
    healthy) run healthy disanatdetect evaluate --model "$manifest" --held-out-healthy 20 --synthetic \
        --methods dal,threshold --no-ablations --out "$out/evaluation-healthy"
        run versus-shipped-healthy python3 Resources/compare_releases.py Resources/results/held-out-healthy.csv \
            "$out/evaluation-healthy/results.csv" --names shipped,candidate --source held-out ;;
    heads) run heads disanatdetect evaluate --model "$manifest" --held-out-healthy 6 --with-head \
        --methods dal,threshold --no-ablations --out "$out/evaluation-heads"
        run versus-shipped-heads python3 Resources/compare_releases.py Resources/results/held-out-heads.csv \
            "$out/evaluation-heads/results.csv" --names shipped,candidate --source held-out ;;
    demo) run demo disanatdetect demo --model "$manifest" --out "$out/demo" ;;
    phi) run phi python3 Resources/make_phi_figure.py --model "$manifest" --out "$out/phi-examples.png" ;;
    native) run native python3 Resources/measure_native_scans.py ../shared/data/real/TCGA-FG-6692 \
        --compare-encoder-brain --model "$manifest" ;;
    benchmark) run benchmark disanatdetect benchmark ../shared/data/real/TCGA-DU-7294/flair.nii.gz --runs 5 \
        --methods dal,threshold --device cpu --model "$manifest" --out "$out/benchmark.json" ;;
    esac
done
echo "done: $out"
