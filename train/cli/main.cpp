// The zoo command: train, eval, list. Exit codes: 0 success, 1 failure while
// running, 2 bad usage or input (config, argument, data file, checkpoint), 130 interrupted.
#include <chrono>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "train/checkpoint.h"
#include "train/config.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace {

constexpr int kExitOk = 0, kExitFailure = 1, kExitUsage = 2, kExitInterrupted = 130;

const char* kUsage = R"(zoo: train, evaluate and sample eight deep-learning papers in C++ (LibTorch).

usage: zoo <command> [options]

commands:
  train   --config F [--set section.key=value]... [--run-dir D] [--resume]
  eval    --checkpoint C [--split test|val] [--set section.key=value]...
  list    the tasks and the shipped configs

`zoo <command> --help` describes a command's options.
exit codes: 0 ok, 1 failure while running, 2 bad usage or input, 130 interrupted (checkpoint saved)
)";

std::string json_line(const zoo::Scalars& m) {
  nlohmann::json j = nlohmann::json::object();
  for (auto& [k, v] : m) j[k] = v;
  return j.dump();
}

std::string timestamp() {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  localtime_r(&t, &tm);
  std::ostringstream os;
  os << std::put_time(&tm, "%Y%m%d-%H%M%S");
  return os.str();
}

/// The newest run directory under runs/ whose name starts with `prefix` and that has checkpoints.
std::string newest_run(const std::string& prefix) {
  std::string best;
  fs::file_time_type best_time{};
  if (!fs::is_directory("runs")) return best;
  for (const auto& e : fs::directory_iterator("runs")) {
    if (!e.is_directory() || e.path().filename().string().rfind(prefix, 0) != 0) continue;
    auto ckpts = zoo::list_step_checkpoints((e.path() / "checkpoints").string());
    if (ckpts.empty()) continue;
    auto t = fs::last_write_time(ckpts.back());
    if (best.empty() || t > best_time) best = e.path().string(), best_time = t;
  }
  return best;
}

cxxopts::ParseResult parse(cxxopts::Options& options, int argc, char** argv) {
  options.add_options()("h,help", "show this help");
  auto result = options.parse(argc, argv);
  if (result.count("help")) {
    std::cout << options.help() << std::endl;
    std::exit(kExitOk);
  }
  if (!result.unmatched().empty())
    throw zoo::UsageError("unexpected argument '" + result.unmatched().front() + "' (see zoo " +
                          options.program().substr(4) + " --help)");
  return result;
}

int cmd_train(int argc, char** argv) {
  cxxopts::Options o("zoo train", "Train a model from a YAML config. Writes config.yaml, metrics.jsonl, "
                                  "checkpoints/ and samples/ into the run directory.");
  o.add_options()("c,config", "config file (configs/*.yaml)", cxxopts::value<std::string>())(
      "s,set", "override a key: section.key=value (repeatable)", cxxopts::value<std::vector<std::string>>())(
      "run-dir", "run directory (default runs/<task>-<time>)", cxxopts::value<std::string>())(
      "resume", "continue from the newest checkpoint in --run-dir (default: the newest run of the task)");
  auto r = parse(o, argc, argv);
  if (!r.count("config")) throw zoo::UsageError("zoo train: --config is required (e.g. configs/vit_fashion_mnist.yaml)");
  auto sets = r.count("set") ? r["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
  auto cfg = zoo::Config::from_file(r["config"].as<std::string>(), sets);

  zoo::TrainerOptions opt;
  opt.resume = r.count("resume") > 0;
  if (r.count("run-dir")) {
    opt.run_dir = r["run-dir"].as<std::string>();
  } else if (opt.resume) {
    opt.run_dir = newest_run(cfg.task() + "-");
    if (opt.run_dir.empty())
      throw zoo::UsageError("--resume: no run of " + cfg.task() + " with checkpoints under runs/; pass --run-dir");
  } else {
    opt.run_dir = "runs/" + cfg.task() + "-" + timestamp();
  }
  if (opt.resume && !fs::is_directory(opt.run_dir))
    throw zoo::UsageError("--run-dir " + opt.run_dir + ": no such run directory to resume");
  zoo::Trainer trainer(cfg, opt);
  auto metrics = trainer.run();
  if (trainer.interrupted()) return kExitInterrupted;
  metrics["step"] = static_cast<double>(cfg.get_int("train.steps"));
  std::cout << json_line(metrics) << std::endl;
  return kExitOk;
}

int cmd_eval(int argc, char** argv) {
  cxxopts::Options o("zoo eval", "Evaluate a checkpoint; the last line printed is one JSON object of metrics.");
  o.add_options()("checkpoint", "checkpoint file (runs/<run>/checkpoints/best.pt)", cxxopts::value<std::string>())(
      "split", "test or val", cxxopts::value<std::string>()->default_value("test"))(
      "s,set", "override a stored key, e.g. data.root=... or train.device=cpu",
      cxxopts::value<std::vector<std::string>>());
  auto r = parse(o, argc, argv);
  if (!r.count("checkpoint")) throw zoo::UsageError("zoo eval: --checkpoint is required");
  const auto split = r["split"].as<std::string>();
  if (split != "test" && split != "val") throw zoo::UsageError("--split " + split + ": expected test or val");
  auto sets = r.count("set") ? r["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
  auto task = zoo::load_task(r["checkpoint"].as<std::string>(), sets);
  zoo::Scalars m;
  {
    torch::NoGradGuard no_grad;
    m = task->evaluate(split);
  }
  std::cout << json_line(m) << std::endl;
  return kExitOk;
}

int cmd_list(int argc, char** argv) {
  cxxopts::Options o("zoo list", "List the tasks and the configs under ./configs.");
  parse(o, argc, argv);
  std::cout << "tasks:\n";
  for (const auto& t : zoo::task_registry()) std::cout << "  " << std::left << std::setw(22) << t.name << t.description << "\n";
  std::cout << "configs:\n";
  std::vector<std::string> files;
  if (fs::is_directory("configs"))
    for (const auto& e : fs::directory_iterator("configs"))
      if (e.path().extension() == ".yaml") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::string task = "?";
    try {
      task = zoo::Config::from_file(f).task();
    } catch (const std::exception& e) {
      task = std::string("invalid: ") + e.what();
    }
    std::cout << "  " << std::left << std::setw(40) << f << task << "\n";
  }
  if (files.empty()) std::cout << "  (none in ./configs; run zoo from the repository root)\n";
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  if (argc < 2) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
      std::cout << kUsage;
      return kExitOk;
    }
    if (cmd == "train") return cmd_train(argc - 1, argv + 1);
    if (cmd == "eval") return cmd_eval(argc - 1, argv + 1);
    if (cmd == "list") return cmd_list(argc - 1, argv + 1);
    std::cerr << "zoo: unknown command '" << cmd << "' (commands: train, eval, list; see zoo --help)\n";
    return kExitUsage;
  } catch (const zoo::UsageError& e) {
    std::cerr << "zoo: error: " << e.what() << "\n";
    return kExitUsage;
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "zoo " << cmd << ": " << e.what() << " (see zoo " << cmd << " --help)\n";
    return kExitUsage;
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    std::cerr << "zoo: failed: " << what.substr(0, what.find('\n')) << "\n";
    return kExitFailure;
  } catch (const std::exception& e) {
    std::cerr << "zoo: failed: " << e.what() << "\n";
    return kExitFailure;
  }
}
