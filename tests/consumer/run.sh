#!/usr/bin/env bash
# ctest: install zoo from the build tree into a scratch prefix, then configure, build and run
# tests/consumer against it with find_package(zoo): as is, with COMPONENTS, and with zoo::train's
# dependencies hidden. Then train a tiny ViT with the installed zoo (an EMA run), export it, and
# check that the zoo::models-only consumer, loading the export as the README says, prints the
# features zoo::train's Embedder gives for the run's checkpoint.
set -euo pipefail
build=$1 src=$2
root=$(cd "$src/../.." && pwd)
data=${ZOO_DATA:-data}
[[ $data = /* ]] || data=$root/$data   # relative to the repository, as for the other tests
data=$data/fashion-mnist
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
prefixes=${CMAKE_PREFIX_PATH:-}   # the environment's list is colon-separated
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
launcher=(); command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
hide=(--no-warn-unused-cli -DCMAKE_DISABLE_FIND_PACKAGE_yaml-cpp=ON -DCMAKE_DISABLE_FIND_PACKAGE_spdlog=ON
      -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON)
# configure NAME [cmake args]: configures tests/consumer into $work/NAME; its output in $work/NAME.log.
configure() {
  local name=$1; shift
  cmake -S "$src" -B "$work/$name" "${gen[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$work/prefix;${prefixes//:/;}" "$@" > "$work/$name.log" 2>&1
}
# find_package(zoo): zoo::models and zoo::train; both programs build.
configure all || { cat "$work/all.log"; exit 1; }
cmake --build "$work/all" > "$work/all-build.log" || { cat "$work/all-build.log"; exit 1; }
"$work/all/consumer"
# COMPONENTS models: zoo::models alone, though zoo::train's dependencies are there.
configure models -DCOMPONENTS=models -DEXPECT_TRAIN=OFF || { cat "$work/models.log"; exit 1; }
# zoo::train's dependencies hidden: zoo::models alone, said so; a program that links it builds and runs.
configure hidden -DEXPECT_TRAIN=OFF "${hide[@]}" || { cat "$work/hidden.log"; exit 1; }
grep -q "zoo: zoo::train left out: zoo::train needs yaml-cpp, spdlog, nlohmann_json, not found" "$work/hidden.log" ||
  { echo "no note that zoo::train was left out:"; cat "$work/hidden.log"; exit 1; }
cmake --build "$work/hidden" > "$work/hidden-build.log" || { cat "$work/hidden-build.log"; exit 1; }
"$work/hidden/consumer"
# ... and COMPONENTS train fails, naming what is missing (spdlog alone hidden here).
if configure want-train "-DCOMPONENTS=models;train" --no-warn-unused-cli -DCMAKE_DISABLE_FIND_PACKAGE_spdlog=ON ||
   ! grep -q "zoo::train needs spdlog, not found" "$work/want-train.log"; then
  echo "find_package(zoo COMPONENTS train) without spdlog did not fail as expected:"; cat "$work/want-train.log"
  exit 1
fi
# ... and a LibTorch of another release than zoo's fails, naming both (a stand-in TorchConfig of 9.9.0).
mkdir -p "$work/torch-9.9"
echo 'set(Torch_FOUND TRUE)' > "$work/torch-9.9/TorchConfig.cmake"
printf 'set(PACKAGE_VERSION "9.9.0")\nset(PACKAGE_VERSION_COMPATIBLE TRUE)\n' > "$work/torch-9.9/TorchConfigVersion.cmake"
if configure other-torch -DTorch_DIR="$work/torch-9.9" ||
   ! tr -s ' \n' '  ' < "$work/other-torch.log" |   # CMake wraps the message
     grep "zoo was built against LibTorch [0-9.]*, but this project found LibTorch 9.9.0" > /dev/null; then
  echo "find_package(zoo) with LibTorch 9.9.0 did not fail as expected:"; cat "$work/other-torch.log"
  exit 1
fi

cat > "$work/vit.yaml" <<YAML
task: vit_fashion_mnist
model: {patch_size: 7, dim: 32, depth: 2, heads: 4, mlp_dim: 64}
data: {root: "$data", train_limit: 200, eval_limit: 100}
train: {device: cpu, threads: 1, batch_size: 16, steps: 20, log_every: 10, eval_every: 0, checkpoint_every: 20,
        ema: true, ema_decay: 0.9}
YAML
"$work/prefix/bin/zoo" train --config "$work/vit.yaml" --run-dir "$work/run" > "$work/train.log" 2>&1 ||
  { cat "$work/train.log"; exit 1; }
"$work/prefix/bin/zoo" export --checkpoint "$work/run/checkpoints/step-00000020.pt" --out "$work/vit.pt" > /dev/null
"$work/all/consumer" "$work/vit.pt" > "$work/models.txt"
"$work/all/consumer_train" "$work/run/checkpoints/step-00000020.pt" > "$work/train.txt"
# The same 64 numbers (2 images x dim 32), to float rounding; anything that is not a finite
# number (nan, inf) disagrees.
paste "$work/models.txt" "$work/train.txt" | awk '
  function number(s) { return s ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ }
  { n++; if (!number($1) || !number($2)) { bad++; next }
    d = $1 - $2; if (d < 0) d = -d; a = $2 < 0 ? -$2 : $2; if (d > 1e-5 + 1e-5 * a) bad++ }
  END { if (n != 64 || bad) { print "features differ: " bad + 0 " of " n; exit 1 } print "features agree: " n " values" }' ||
  { paste "$work/models.txt" "$work/train.txt"; exit 1; }
