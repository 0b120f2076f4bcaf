#!/usr/bin/env bash
# ctest: install zoo from the build tree into a scratch prefix, then configure, build and run
# tests/consumer against it with find_package(zoo). Then train a tiny ViT with the zoo command
# (an EMA run), export it, and check that the zoo::models-only consumer, loading the export as the
# README says, prints the features zoo::train's Embedder gives for the run's checkpoint.
set -euo pipefail
build=$1 src=$2
data=${ZOO_DATA:-$src/../../data}/fashion-mnist
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
prefixes=${CMAKE_PREFIX_PATH:-}   # the environment's list is colon-separated
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
launcher=(); command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src" -B "$work/build" "${gen[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix;${prefixes//:/;}" > "$work/configure.log" || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" > "$work/build.log" || { cat "$work/build.log"; exit 1; }
"$work/build/consumer"

# zoo::models alone needs LibTorch alone: the train component's dependencies hidden from CMake,
# a project that asks for models configures, builds and runs; one that asks for train is told why not.
hide=(--no-warn-unused-cli -DCMAKE_DISABLE_FIND_PACKAGE_yaml-cpp=ON -DCMAKE_DISABLE_FIND_PACKAGE_spdlog=ON
      -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON)
cmake -S "$src" -B "$work/models-only" "${gen[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=Release -DMODELS_ONLY=ON \
  "${hide[@]}" -DCMAKE_PREFIX_PATH="$work/prefix;${prefixes//:/;}" > "$work/configure2.log" ||
  { cat "$work/configure2.log"; exit 1; }
cmake --build "$work/models-only" > "$work/build2.log" || { cat "$work/build2.log"; exit 1; }
"$work/models-only/consumer"
if cmake -S "$src" -B "$work/want-train" -DMODELS_ONLY=ON -DWANT_TRAIN=ON "${hide[@]}" \
     -DCMAKE_PREFIX_PATH="$work/prefix;${prefixes//:/;}" > "$work/configure3.log" 2>&1 ||
   ! grep -q "zoo::train needs yaml-cpp" "$work/configure3.log"; then
  echo "find_package(zoo COMPONENTS train) without its dependencies did not fail as expected:"; cat "$work/configure3.log"
  exit 1
fi

cat > "$work/vit.yaml" <<YAML
task: vit_fashion_mnist
model: {patch_size: 7, dim: 32, depth: 2, heads: 4, mlp_dim: 64}
data: {root: $data, train_limit: 200, eval_limit: 100}
train: {device: cpu, threads: 1, batch_size: 16, steps: 20, log_every: 10, eval_every: 0, checkpoint_every: 20,
        ema: true, ema_decay: 0.9}
YAML
"$work/prefix/bin/zoo" train --config "$work/vit.yaml" --run-dir "$work/run" > "$work/train.log" 2>&1 ||
  { cat "$work/train.log"; exit 1; }
"$work/prefix/bin/zoo" export --checkpoint "$work/run/checkpoints/step-00000020.pt" --out "$work/vit.pt" > /dev/null
"$work/build/consumer" "$work/vit.pt" > "$work/models.txt"
"$work/build/consumer_train" "$work/run/checkpoints/step-00000020.pt" > "$work/train.txt"
# The same 64 numbers (2 images x dim 32), to float rounding.
paste "$work/models.txt" "$work/train.txt" | awk '
  { n++; d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 + 1e-5 * ($2 < 0 ? -$2 : $2)) bad++ }
  END { if (n != 64 || bad) { print "features differ: " bad + 0 " of " n; exit 1 } print "features agree: " n " values" }'
