// Shared by the test files: paths, a scratch directory, running the zoo binary.
#pragma once

#include <sys/wait.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/catch.h"
#include <nlohmann/json.hpp>
#include <sstream>
#include <torch/torch.h>

#include "train/checkpoint.h"

namespace zoo::test {

inline std::string source_dir() { return ZOO_SOURCE_DIR; }
inline std::string data_root() {
  const char* env = std::getenv("ZOO_DATA");
  return (env ? std::string(env) : source_dir() + "/data") + "/fashion-mnist";
}

/// Removes a directory tree (zoo::remove_tree, which says why it is not remove_all); throws
/// std::filesystem::filesystem_error on failure.
inline void remove_tree(const std::filesystem::path& dir) {
  std::error_code ec;
  zoo::remove_tree(dir.string(), ec);
  if (ec) throw std::filesystem::filesystem_error("cannot remove", dir, ec);
}

/// The scratch directories the running test case made; test_main.cpp removes them when the test
/// case passes and keeps them (naming them) when it fails, or always with ZOO_KEEP_TEST_DIRS=1.
inline std::vector<std::string>& scratch_dirs() {
  static std::vector<std::string> dirs;
  return dirs;
}

/// A fresh, empty directory under the system temp folder.
inline std::string scratch(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("zoo-test-" + name + "-" + std::to_string(::getpid()));
  remove_tree(dir);
  std::filesystem::create_directories(dir);
  scratch_dirs().push_back(dir.string());
  return dir.string();
}

struct Run {
  int code = -1;
  std::string output;  // stdout and stderr together
};

/// Runs a shell command line, returning its exit code and output.
inline Run run(const std::string& command) {
  Run r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

/// s as one word of a sh command line: single-quoted, each ' written as '\''.
inline std::string q(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

/// s as a YAML double-quoted scalar, for a path in a test's config: in a flow mapping
/// ({root: PATH, ...}) a plain scalar ends at ", " and may not hold [ ] { }, and anywhere at
/// ": " or " #", all of which a clone's or TMPDIR's path may hold.
inline std::string yaml_str(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

/// The zoo binary, quoted as one word of a sh command line.
inline std::string zoo_bin() { return q(ZOO_BINARY); }

/// A PNG file's (width, height), read from its IHDR chunk; (0, 0) when the file is not a PNG.
inline std::pair<int64_t, int64_t> png_size(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char h[24] = {};
  in.read(reinterpret_cast<char*>(h), sizeof h);
  const unsigned char signature[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (!in || std::memcmp(h, signature, 8) != 0 || std::memcmp(h + 12, "IHDR", 4) != 0) return {0, 0};
  auto big_endian = [&](int at) {
    return (int64_t{h[at]} << 24) | (int64_t{h[at + 1]} << 16) | (int64_t{h[at + 2]} << 8) | int64_t{h[at + 3]};
  };
  return {big_endian(16), big_endian(20)};
}

inline std::string last_line(const std::string& s) {
  auto t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

/// `zoo ARGS` (shell redirections allowed) exits 2, its last line an error that contains `message`.
inline void check_refused(const std::string& args, const std::string& message) {
  INFO("zoo " + args);
  auto r = run(zoo_bin() + " " + args);
  CHECK(r.code == 2);
  CHECK_THAT(last_line(r.output), Catch::Matchers::Contains("zoo: error: ") && Catch::Matchers::Contains(message));
}

/// (step, loss) of each training row of a run's metrics.jsonl.
inline std::vector<std::pair<int64_t, double>> train_losses(const std::string& run_dir) {
  std::vector<std::pair<int64_t, double>> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto row = nlohmann::json::parse(line);
    if (row["split"] == "train") out.emplace_back(row["step"].get<int64_t>(), row["loss"].get<double>());
  }
  return out;
}

/// A small, fast ViT config on real Fashion-MNIST: a tiny model and data subset.
inline std::string tiny_vit_yaml(int steps) {
  return "task: vit_fashion_mnist\n"
         "model: {patch_size: 7, dim: 32, depth: 2, heads: 2, mlp_dim: 64, dropout: 0.1}\n"
         "data: {root: " + yaml_str(data_root()) + ", train_limit: 2000, eval_limit: 500}\n"
         "train: {device: cpu, threads: 1, seed: 3, batch_size: 32, steps: " + std::to_string(steps) +
         ", log_every: 2, eval_every: 0, checkpoint_every: 4, keep_last: 2, ema: true, ema_decay: 0.9}\n"
         "optim: {lr: 0.003, warmup_steps: 2, schedule: cosine}\n";
}

/// `zoo embed`'s vectors, (N, D): the output's lines that are all numbers (other lines, a log
/// line for instance, are skipped); an empty tensor when there are none or the rows differ in length.
inline torch::Tensor embedding_rows(const std::string& output) {
  std::istringstream lines(output);
  std::vector<std::vector<float>> rows;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::vector<float> row;
    float v;
    while (fields >> v) row.push_back(v);
    if (!row.empty() && fields.eof()) rows.push_back(std::move(row));
  }
  if (rows.empty()) return {};
  auto out = torch::empty({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())});
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].size() != rows[0].size()) return {};
    out[static_cast<int64_t>(i)] = torch::tensor(rows[i]);
  }
  return out;
}

/// A float loss computed under bf16 autocast: backward, and every parameter of `model` got a
/// float32 gradient (the parameters stay float; autocast's casts carry their gradients back).
/// `reference`, if given, the same loss computed in float32 (same inputs, same dropout masks): the
/// two losses agree to bf16's precision, and so do the gradients, taken as one vector (cosine above 0.999).
inline void check_backward_in_float(torch::nn::Module& model, const torch::Tensor& loss,
                                    const torch::Tensor& reference = {}) {
  REQUIRE(loss.scalar_type() == torch::kFloat);
  const auto params = model.parameters();
  loss.backward();
  CHECK(std::isfinite(loss.item<double>()));
  for (const auto& p : model.named_parameters()) {
    INFO(p.key());
    REQUIRE(p.value().grad().defined());
    CHECK(p.value().grad().scalar_type() == torch::kFloat);
  }
  if (!reference.defined()) return;
  const auto expected = torch::autograd::grad({reference}, params, {}, /*retain_graph=*/false,
                                              /*create_graph=*/false, /*allow_unused=*/true);
  INFO("loss " << loss.item<double>() << ", in float32 " << reference.item<double>());
  CHECK(loss.item<double>() == Approx(reference.item<double>()).epsilon(0.01));
  std::vector<torch::Tensor> got, want;
  for (size_t i = 0; i < params.size(); ++i) {
    got.push_back(params[i].grad().flatten());
    want.push_back(expected[i].defined() ? expected[i].flatten() : torch::zeros_like(params[i]).flatten());
  }
  const auto a = torch::cat(got).to(torch::kDouble), b = torch::cat(want).to(torch::kDouble);
  const double cosine = ((a * b).sum() / (a.norm() * b.norm())).item<double>();
  INFO("cosine of the bf16 and float32 gradients " << cosine);
  CHECK(cosine > 0.999);
}

}  // namespace zoo::test
