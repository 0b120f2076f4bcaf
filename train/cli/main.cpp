// The zoo command: train, eval, list. Exit codes: 0 success, 1 failure while
// running, 2 bad usage or input (config, argument, data file, checkpoint), 130 interrupted.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

// A repeatable option keeps each argument whole: `--set model.channel_mults=1,2` or a fill-mask
// text with commas is one value, not split at the commas (cxxopts' default).
#define CXXOPTS_VECTOR_DELIMITER '\0'
#include <cxxopts.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "train/checkpoint.h"
#include "train/config.h"
#include "train/image.h"
#include "train/tasks/bert.h"
#include "train/tasks/clip.h"
#include "train/tasks/embed.h"
#include "train/tasks/g2p.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace {

constexpr int kExitOk = 0, kExitFailure = 1, kExitUsage = 2, kExitInterrupted = 130;

const char* kUsage = R"(zoo: train, evaluate and sample eight deep-learning papers in C++ (LibTorch).

usage: zoo <command> [options]

commands:
  train   --config F [--set section.key=value]... [--run-dir D] [--resume]
  eval    --checkpoint C [--split test|val] [--predictions FILE] [--set section.key=value]...
  sample  {vae,gan,ddpm,ddim} --checkpoint C [--n 64] [--seed 0] [--out grid.png] [--columns 8 | --interpolate K [--between A.png,B.png]]
          (ddim: [--steps S] [--eta E] [--spacing S]; ddpm: [--variance V]; ddpm and ddim without --checkpoint: the newest DDPM run)
  g2p     --checkpoint C [--no-stress] [--nbest K] [WORD]...   pronunciations (words from standard input when none are given)
  fill-mask --checkpoint C ["TEXT with [MASK]"] [--top K]   the likeliest tokens for each [MASK] (texts from standard input, a line each, when none is given)
  zero-shot --checkpoint C --labels "sneaker,bag,coat" (--image FILE | [IMAGE]...)   each label's probability for FILE;
          for several images (from standard input, a line each, when none are given) one line each: file, best label, probability
  embed   --checkpoint C [--images|--texts] [INPUT]...   a vector per image file or text (inputs from standard input, a line each, when none are given)
  average --run-dir D [--last N] --out F   (or: average C1 C2 ... --out F) one checkpoint of their mean weights
  export  --checkpoint C --out F   the weights C is evaluated with, without what resuming needs (a smaller file)
  list    [TASK]   the tasks and the shipped configs; with a task's name, its config keys

`zoo <command> --help` describes a command's options.
exit codes: 0 ok, 1 failure while running, 2 bad usage or input, 130 interrupted (checkpoint saved)
)";

std::string json_line(const zoo::Scalars& m) {
  nlohmann::json j = nlohmann::json::object();
  for (auto& [k, v] : m) j[k] = v;
  return j.dump();
}

/// What an out-of-memory error says to do.
constexpr const char* kLowerMemory =
    "lower the batch size (train.batch_size), the sample count (--n, eval.fid_samples) or the model's size, or free "
    "memory";

std::string timestamp() {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  localtime_r(&t, &tm);
  std::ostringstream os;
  os << std::put_time(&tm, "%Y%m%d-%H%M%S");
  return os.str();
}

/// The newest run under runs/ of a task whose name starts with `task_prefix`: the run directory
/// and its newest checkpoint (step checkpoints and best.pt, a restart's in restarts/seed-S too);
/// empty when there is none.
struct NewestRun {
  std::string dir, checkpoint;
  std::optional<torch::serialize::InputArchive> archive;  // the checkpoint, as read and checked
  std::vector<std::string> unreadable;  // runs passed over: a checkpoint or folder that could not be read, and why
  /// For a message that no run was found: " that can be read (N runs could not be, e.g. ...)", or "".
  std::string unreadable_note() const {
    if (unreadable.empty()) return "";
    return " that can be read (" + std::to_string(unreadable.size()) + (unreadable.size() == 1 ? " run" : " runs") +
           " could not be, e.g. " + unreadable.front() + ")";
  }
};
NewestRun newest_run(const std::string& task_prefix) {
  NewestRun best;
  fs::file_time_type best_time{};
  if (!fs::is_directory("runs")) return best;
  for (const auto& e : fs::directory_iterator("runs")) {
    // One run that cannot be read (a link to itself, a folder without permission, no readable
    // checkpoint) gives way to the others, and is named if none is found.
    try {
      auto files = zoo::list_step_checkpoints((e.path() / "checkpoints").string());
      if (fs::is_regular_file(e.path() / "checkpoints" / "best.pt"))
        files.push_back((e.path() / "checkpoints" / "best.pt").string());
      if (fs::is_directory(e.path() / "restarts"))
        for (const auto& seed : fs::directory_iterator(e.path() / "restarts")) {
          auto more = zoo::list_step_checkpoints((seed.path() / "checkpoints").string());
          files.insert(files.end(), more.begin(), more.end());
        }
      // Newest first; a file that cannot be read (corrupt, foreign, a link to nothing) gives way to the one before it.
      files.erase(std::remove_if(files.begin(), files.end(), [](const auto& f) { return !fs::is_regular_file(f); }),
                  files.end());
      std::vector<std::pair<fs::file_time_type, std::string>> dated;
      for (const auto& f : files) {  // one pruned (train.keep_last) since it was listed is passed over
        std::error_code gone;
        const auto time = fs::last_write_time(f, gone);
        if (!gone) dated.emplace_back(time, f);
      }
      std::stable_sort(dated.begin(), dated.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
      std::string newest, task, why;
      std::optional<torch::serialize::InputArchive> archive;
      fs::file_time_type t{};
      for (const auto& [time, f] : dated) {
        try {
          archive = zoo::read_checkpoint(f);
          task = zoo::Config::from_yaml(zoo::checkpoint_config(*archive, f), f).task();
          newest = f, t = time;
          break;
        } catch (const std::exception& x) {
          if (why.empty()) why = std::string(x.what()).substr(0, std::string(x.what()).find("; "));  // the cause
        }
      }
      if (newest.empty() && !why.empty()) best.unreadable.push_back(why);
      if (newest.empty() || task.rfind(task_prefix, 0) != 0) continue;  // none readable, or another task's run
      if (best.dir.empty() || t > best_time) {
        best.dir = e.path().string(), best.checkpoint = newest, best.archive = std::move(archive), best_time = t;
      }
    } catch (const fs::filesystem_error& x) {
      best.unreadable.push_back((x.path1().empty() ? e.path() : x.path1()).string() + ": " + x.code().message());
    }
  }
  return best;
}

/// The option whose value is `value` on the command line, for a message: "--top" from "--top abc" or
/// "--top=abc", "-n" from "-nabc".
std::string option_given(int argc, char** argv, const std::string& value) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto eq = a.find('=');
    if (a.rfind("-", 0) == 0 && eq != std::string::npos && a.substr(eq + 1) == value) return a.substr(0, eq);
    if (i + 1 < argc && argv[i + 1] == value && a.rfind("-", 0) == 0) return a;
    if (a.size() > 2 && a[0] == '-' && a[1] != '-' && a.substr(2) == value) return a.substr(0, 2);  // -n5
  }
  return "";
}

/// A failure when standard output could not be written (closed, or a full disk): what a command
/// prints there would be lost, so it does not end with success.
void check_stdout() {
  if (!std::cout) throw std::runtime_error("could not write to standard output (closed, or the disk is full)");
}

/// Whether a flag (an option without a value) is on: --resume and --resume=true are, --resume=false
/// is not (cxxopts takes a value after '=' for a flag too).
bool flag_on(const cxxopts::ParseResult& r, const std::string& name) { return r.count(name) > 0 && r[name].as<bool>(); }

/// The text an option was given as, the last time it was given; "" when it was not. cxxopts reads
/// numbers leniently ("0.5abc" as 0.5, "0,5" as 0, some whole numbers past int64's range wrapped
/// round), so numeric options are read again from it, strictly (whole_option, Config::set).
std::string given_text(const cxxopts::ParseResult& r, const std::string& name) {
  std::string text;
  for (const auto& kv : r.arguments())
    if (kv.key() == name) text = kv.value();
  return text;
}

/// A whole-number option's value, read from its text as the configs' whole numbers are
/// (zoo::parse_whole); its default when not given.
int64_t whole_option(const cxxopts::ParseResult& r, const std::string& name) {
  if (!r.count(name)) return r[name].as<int64_t>();
  const auto text = given_text(r, name);
  std::string why;
  auto v = zoo::parse_whole(text, why);
  if (!v) throw zoo::UsageError("--" + name + " " + text + ": " + (why.empty() ? "expected a whole number, in decimal" : why));
  return *v;
}

/// `shown` is the command line as the user typed it, for messages, when `argv` is a rewrite of it.
cxxopts::ParseResult parse(cxxopts::Options& options, int argc, char** argv, char** shown = nullptr) {
  options.add_options()("h,help", "show this help");
  cxxopts::ParseResult result;
  try {
    result = options.parse(argc, argv);
  } catch (const cxxopts::exceptions::incorrect_argument_type& e) {
    // cxxopts names the value ("Argument 'abc' failed to parse"), not the option: find the option.
    const std::string what = e.what(), pre = "Argument ", post = " failed to parse";
    std::string value;
    if (what.rfind(pre, 0) == 0 && what.size() > pre.size() + post.size() &&
        what.compare(what.size() - post.size(), post.size(), post) == 0) {
      value = what.substr(pre.size(), what.size() - pre.size() - post.size());
      for (const std::string q : {"\u2018", "'"})
        if (value.rfind(q, 0) == 0) value = value.substr(q.size());
      for (const std::string q : {"\u2019", "'"})
        if (value.size() >= q.size() && value.compare(value.size() - q.size(), q.size(), q) == 0)
          value.resize(value.size() - q.size());
    }
    const auto opt = option_given(argc, shown ? shown : argv, value);
    throw zoo::UsageError((opt.empty() ? std::string(what) : opt + " " + value + ": not a valid value") + " (see zoo " +
                          options.program().substr(4) + " --help)");
  }
  if (flag_on(result, "help")) {
    std::cout << options.help() << std::endl;
    check_stdout();
    std::exit(kExitOk);
  }
  // A single-valued option given twice would silently keep the last; only options that take a list
  // (--set, the positional words and texts) repeat.
  std::set<std::string> repeatable;
  for (const auto& group : options.groups())
    for (const auto& d : options.group_help(group).options)
      if (d.is_container) repeatable.insert(d.l.empty() ? d.s : d.l.front());  // cxxopts' key for the option
  std::map<std::string, int> given;
  for (const auto& kv : result.arguments()) {
    if (repeatable.count(kv.key())) continue;
    if (++given[kv.key()] == 2)
      throw zoo::UsageError("--" + kv.key() + " given twice; keep one (see zoo " + options.program().substr(4) +
                            " --help)");
    // --checkpoint "" would name no file in its error; an empty positional is left to its command.
    if (const auto flag = kv.value().empty() ? option_given(argc, shown ? shown : argv, "") : ""; !flag.empty())
      throw zoo::UsageError(flag + ": empty; give a value (see zoo " + options.program().substr(4) + " --help)");
  }
  if (!result.unmatched().empty())
    throw zoo::UsageError("unexpected argument '" + result.unmatched().front() + "' (see zoo " +
                          options.program().substr(4) + " --help)");
  return result;
}

/// An output file the command will write: a file name in an existing folder, and never the
/// checkpoint it reads (nor any other file that is a checkpoint).
/// `renamed_over`: the file is written by renaming a temporary file over it, so a link, a device or a
/// pipe there would be replaced, not written through (--out); --predictions writes through them.
void check_output(const std::string& path, const std::string& flag, const std::string& checkpoint,
                  bool renamed_over = false) {
  if (path.empty()) throw zoo::UsageError(flag + ": empty; give a file name");
  const fs::path p(path);
  if (fs::is_directory(p)) throw zoo::UsageError(flag + " " + path + ": is a directory; give a file name in it");
  std::error_code ec;
  const auto st = fs::symlink_status(p, ec);
  if (renamed_over && !ec && fs::exists(st) && !fs::is_regular_file(st))
    throw zoo::UsageError(flag + " " + path + ": is not a regular file (a device, pipe or link); give a plain file name");
  const auto parent = p.parent_path();
  if (!parent.empty() && !fs::is_directory(parent))
    throw zoo::UsageError(flag + " " + path + ": the folder " + parent.string() + " does not exist; create it first");
  // A checkpoint by name or by content (a zip archive, as torch writes them), through a link too.
  auto is_zip = [&] {
    if (!fs::is_regular_file(p, ec)) return false;
    char magic[4] = {};
    std::ifstream in(p, std::ios::binary);
    return in.read(magic, 4) && std::string(magic, 4) == std::string("PK\x03\x04", 4);
  };
  if (fs::exists(p, ec) && (fs::equivalent(p, checkpoint, ec) || p.extension() == ".pt" || is_zip()))
    throw zoo::UsageError(flag + " " + path + ": would overwrite a checkpoint; give another file name");
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
  opt.resume = flag_on(r, "resume");
  if (r.count("run-dir")) {
    opt.run_dir = r["run-dir"].as<std::string>();
  } else if (opt.resume) {
    const auto run = newest_run(cfg.task());
    opt.run_dir = run.dir;
    if (opt.run_dir.empty())
      throw zoo::UsageError("--resume: no run of " + cfg.task() + " with checkpoints under runs/" +
                            run.unreadable_note() + "; pass --run-dir");
  } else {
    opt.run_dir = "runs/" + cfg.task() + "-" + timestamp();
  }
  if (opt.resume && !fs::is_directory(opt.run_dir))
    throw zoo::UsageError("--run-dir " + opt.run_dir + ": no such run directory to resume");
  bool interrupted = false;
  auto metrics = zoo::run_training(cfg, opt, &interrupted);
  if (interrupted) return kExitInterrupted;
  metrics["step"] = static_cast<double>(cfg.get_int("train.steps"));
  std::cout << json_line(metrics) << std::endl;
  return kExitOk;
}

int cmd_eval(int argc, char** argv) {
  cxxopts::Options o("zoo eval", "Evaluate a checkpoint; the last line printed is one JSON object of metrics.");
  o.add_options()("checkpoint", "checkpoint file (runs/<run>/checkpoints/best.pt)", cxxopts::value<std::string>())(
      "split", "test or val", cxxopts::value<std::string>()->default_value("test"))(
      "s,set", "override a stored key, e.g. data.root=... or train.device=cpu",
      cxxopts::value<std::vector<std::string>>())(
      "predictions", "also write each example's prediction to this file, tab-separated (bert_spam)",
      cxxopts::value<std::string>());
  auto r = parse(o, argc, argv);
  if (!r.count("checkpoint")) throw zoo::UsageError("zoo eval: --checkpoint is required");
  const auto split = r["split"].as<std::string>();
  if (split != "test" && split != "val") throw zoo::UsageError("--split " + split + ": expected test or val");
  auto sets = r.count("set") ? r["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
  auto task = zoo::load_task(r["checkpoint"].as<std::string>(), sets);
  zoo::Scalars m;
  {
    torch::NoGradGuard no_grad;
    if (!r.count("predictions")) {
      m = task->evaluate(split);
    } else {
      const auto path = r["predictions"].as<std::string>();
      check_output(path, "--predictions", r["checkpoint"].as<std::string>());
      std::ostringstream lines;  // nothing is written for a task that has no predictions
      m = task->evaluate_with_predictions(split, lines);
      std::ofstream out(path);
      if (!out) throw zoo::UsageError("--predictions " + path + ": cannot write this file (permissions?); give a writable path");
      if (!(out << lines.str()).flush()) throw zoo::UsageError("--predictions " + path + ": writing failed (disk full?)");
    }
  }
  std::cout << json_line(m) << std::endl;
  return kExitOk;
}

int cmd_sample(int argc, char** argv) {
  cxxopts::Options o("zoo sample", "Sample a grid of images from a generative checkpoint and write it as PNG.\n"
                                   "  zoo sample vae|gan|ddpm|ddim --checkpoint C [--n 64] [--seed 0] [--out grid.png]\n"
                                   "ddpm and ddim both sample a DDPM checkpoint; without --checkpoint, ddpm and ddim take\n"
                                   "the newest DDPM run under runs/.\n"
                                   "  zoo sample vae|gan|ddim --interpolate 8 --n 4   4 rows of 8, each between two latents\n"
                                   "  zoo sample vae|ddim --interpolate 8 --between a.png,b.png   one row from image a to image b");
  o.add_options()("model", "vae, gan, ddpm or ddim", cxxopts::value<std::string>())(
      "checkpoint", "checkpoint file", cxxopts::value<std::string>())(
      "n", "number of samples (-n or --n)", cxxopts::value<int64_t>()->default_value("64"))(
      "seed", "random seed", cxxopts::value<int64_t>()->default_value("0"))(
      "out", "output PNG (its name ends in .png)", cxxopts::value<std::string>()->default_value("grid.png"))(
      "columns", "images per row of the grid", cxxopts::value<int64_t>()->default_value("8"))(
      "interpolate", "K: --n rows of K images, each row walking between two random latents (spherical "
                     "interpolation; ddim with eta 0)", cxxopts::value<int64_t>())(
      "between", "A.png,B.png: with --interpolate K, one row from the model's latent of image A to that of B "
                 "(vae: the mean of q(z|x); ddim: DDIM inversion)", cxxopts::value<std::vector<std::string>>())(
      "steps", "ddim: sampling steps S", cxxopts::value<int64_t>())(
      "eta", "ddim: eta in [0, 1]", cxxopts::value<double>())(
      "spacing", "ddim: linspace, leading or trailing", cxxopts::value<std::string>())(
      "variance", "ddpm: beta or beta_tilde", cxxopts::value<std::string>())(
      "s,set", "override a stored key, e.g. train.device=cpu", cxxopts::value<std::vector<std::string>>());
  o.parse_positional({"model"});
  std::vector<std::string> args(argv, argv + argc);  // cxxopts reads one-letter names as short options: --n -> -n
  std::vector<char*> argp;
  for (auto& a : args) {
    if (a == "--n") a = "-n";
    else if (a.rfind("--n=", 0) == 0) a = "-n" + a.substr(4);
    argp.push_back(a.data());
  }
  auto r = parse(o, argc, argp.data(), argv);
  if (!r.count("model")) throw zoo::UsageError("zoo sample: name the model: vae, gan, ddpm or ddim");
  const auto model = r["model"].as<std::string>();
  std::string family;
  if (model == "vae") family = "vae_";
  else if (model == "gan") family = "gan_";
  else if (model == "ddpm" || model == "ddim") family = "ddpm_";
  else throw zoo::UsageError("zoo sample: unknown model '" + model + "' (vae, gan, ddpm or ddim)");
  const auto n = whole_option(r, "n");
  if (n < 1 || n > 4096) throw zoo::UsageError("--n " + std::to_string(n) + ": expected 1 to 4096 samples");
  const auto seed = whole_option(r, "seed");
  if (seed < 0)  // as train.seed
    throw zoo::UsageError("--seed " + std::to_string(seed) + ": expected a seed of at least 0");
  {
    auto name = fs::path(r["out"].as<std::string>()).filename().string();
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".png") != 0)
      throw zoo::UsageError("--out " + r["out"].as<std::string>() + ": zoo sample writes a PNG file; give a name that "
                            "ends in .png");
  }

  // What the flags say is checked before a checkpoint is looked for and read.
  auto sets = r.count("set") ? r["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
  for (const auto& s : sets) {
    if (s.rfind("sample.sampler=", 0) == 0)
      throw zoo::UsageError("--set " + s + ": zoo sample names the sampler; use zoo sample ddpm or zoo sample ddim");
    if (s.rfind("train.seed=", 0) == 0)
      throw zoo::UsageError("--set " + s + ": zoo sample draws with --seed (default 0); use --seed");
  }
  if (family == "ddpm_") sets.insert(sets.begin(), "sample.sampler=" + model);
  for (const char* flag : {"steps", "eta", "spacing"})  // DDIM's sampler settings; the DDPM sampler takes every step
    if (r.count(flag) && model != "ddim")
      throw zoo::UsageError(std::string("--") + flag + " is a DDIM setting: use it with zoo sample ddim");
  if (r.count("variance") && model != "ddpm")
    throw zoo::UsageError("--variance is a DDPM setting: use it with zoo sample ddpm");
  for (const auto& s : sets)
    for (const char* flag : {"steps", "eta", "spacing", "variance"})  // one of the two, not both
      if (r.count(flag) && s.rfind(std::string("sample.") + flag + "=", 0) == 0)
        throw zoo::UsageError("--set " + s + " and --" + flag + ": give the value once");
  // The flags become --set pairs for the checkpoint's config, their values checked first against
  // the DDPM task's schema (the only task they are for), named as given.
  auto ddpm = zoo::Config::from_yaml("task: ddpm_fashion_mnist\n", "zoo sample");
  auto flag = [&](const std::string& name, const std::string& value) {
    ddpm.set("sample." + name, value, "--" + name + " " + value);
    sets.push_back("sample." + name + "=" + value);
  };
  if (r.count("steps")) flag("steps", given_text(r, "steps"));
  if (r.count("eta")) flag("eta", given_text(r, "eta"));
  if (r.count("spacing")) flag("spacing", r["spacing"].as<std::string>());
  if (r.count("variance")) flag("variance", r["variance"].as<std::string>());
  auto columns = whole_option(r, "columns");
  if (columns < 1)
    throw zoo::UsageError("--columns " + std::to_string(columns) + ": expected at least 1 image per row");
  int64_t per_row = 0;  // --interpolate's images per row
  if (r.count("interpolate")) {
    per_row = whole_option(r, "interpolate");
    if (per_row < 2 || per_row > 64)
      throw zoo::UsageError("--interpolate " + std::to_string(per_row) + ": expected 2 to 64 images per row");
    if (r.count("columns"))
      throw zoo::UsageError("--columns: with --interpolate a row holds one interpolation (--interpolate images)");
    if (n * per_row > 4096)
      throw zoo::UsageError("--n " + std::to_string(n) + " --interpolate " + std::to_string(per_row) + ": " +
                            std::to_string(n * per_row) + " images; at most 4096");
    columns = per_row;
  }
  std::vector<torch::Tensor> ends;  // --between's two images
  if (r.count("between")) {
    std::vector<std::string> files;  // A.png,B.png (or --between given twice)
    for (const auto& v : r["between"].as<std::vector<std::string>>())
      for (auto& f : zoo::split_commas(v)) files.push_back(std::move(f));
    if (!per_row) throw zoo::UsageError("--between: goes with --interpolate K (the images of the row)");
    if (files.size() != 2)
      throw zoo::UsageError("--between: expected two image files, A.png,B.png; got " + std::to_string(files.size()));
    for (const auto& f : files)
      if (f.empty()) throw zoo::UsageError("--between: an empty file name; give two image files, A.png,B.png");
    if (r.count("n"))
      throw zoo::UsageError("--n: with --between there is one row, from one image to the other; drop --n");
    for (const auto& f : files) ends.push_back(zoo::read_image_gray(f, 28));
  }
  std::string checkpoint;
  std::optional<torch::serialize::InputArchive> archive;  // the checkpoint, once read and checked
  if (r.count("checkpoint")) {
    checkpoint = r["checkpoint"].as<std::string>();
  } else if (family == "ddpm_") {
    auto run = newest_run(family);
    if (!run.dir.empty()) {  // its best.pt, else (none, or damaged) its newest readable checkpoint
      const auto best = (fs::path(run.dir) / "checkpoints" / "best.pt").string();
      checkpoint = run.checkpoint;
      archive = std::move(run.archive);
      if (fs::exists(best) && best != checkpoint) try {
          archive = zoo::read_checkpoint(best);
          checkpoint = best;
        } catch (const zoo::UsageError& e) {
          std::cerr << "zoo sample: skipping " << e.what() << "\n";
        }
    }
    if (checkpoint.empty())
      throw zoo::UsageError(
          "zoo sample " + model + ": no DDPM run with checkpoints under runs/" + run.unreadable_note() +
          "; train one with `zoo train --config configs/ddpm_fashion_mnist.yaml` or pass --checkpoint");
    std::cerr << "zoo sample: using " << checkpoint << "\n";
  } else {
    throw zoo::UsageError("zoo sample " + model + ": --checkpoint is required");
  }
  if (!archive) archive = zoo::read_checkpoint(checkpoint);
  {  // the checkpoint must hold the model asked for
    auto task = zoo::Config::from_yaml(zoo::checkpoint_config(*archive, checkpoint), checkpoint).task();
    if (task.rfind(family, 0) != 0)
      throw zoo::UsageError(checkpoint + ": holds a " + task + " run, not " + model +
                            " (zoo sample takes vae, gan, ddpm or ddim to match the checkpoint)");
  }
  const auto out = r["out"].as<std::string>();
  check_output(out, "--out", checkpoint, /*renamed_over=*/true);
  std::unique_ptr<zoo::Task> task;
  try {
    task = zoo::load_task(std::move(*archive), checkpoint, sets);
  } catch (const zoo::UsageError& e) {
    const std::string what = e.what();
    // Checked against the model rather than the schema: more steps than the diffusion has.
    if (r.count("steps") && what.rfind(checkpoint + ": sample.steps: ", 0) == 0)
      throw zoo::UsageError("--steps " + given_text(r, "steps") + what.substr(checkpoint.size()));
    throw;
  }
  torch::manual_seed(static_cast<uint64_t>(seed));
  const int64_t rows = ends.empty() ? n : 1;
  auto images = !ends.empty() ? task->interpolate_between(ends[0], ends[1], per_row)
                : per_row     ? task->interpolate(n, per_row)
                              : task->sample(n);
  try {
    zoo::write_png(out, zoo::make_grid(images, columns, 2, 2));
  } catch (const zoo::UsageError&) {
    throw;
  } catch (const std::runtime_error& e) {  // atomic_write's: the folder or file cannot be written
    throw zoo::UsageError("--out " + out + ": cannot write it (" + e.what() + "); give a writable path");
  }
  if (per_row) std::cout << "wrote " << rows << (rows == 1 ? " interpolation" : " interpolations") << " of " << per_row << " images to " << out << "\n";
  else std::cout << "wrote " << n << (n == 1 ? " sample" : " samples") << " to " << out << "\n";
  return kExitOk;
}

/// Answers what standard input holds: `read(item, line_end)` takes one item (false at the end)
/// and says whether a line ended with it; `answer` gets them 256 at a time, so that a long stream
/// gets its first answers (or a bad item's error) at once, and from a terminal line by line.
/// False when standard input held nothing.
template <class Read, class Answer>
bool answer_stdin(Read read, Answer answer) {
  const bool terminal = ::isatty(STDIN_FILENO) != 0;
  std::vector<std::string> batch;
  bool any = false, line_end = false;
  auto answer_batch = [&] {  // each batch's answers out, or the failure to write them, before the next
    answer(batch);
    batch.clear();
    std::cout.flush();
    check_stdout();
  };
  for (std::string item; read(item, line_end);) {
    batch.push_back(std::move(item));
    any = true;
    if (batch.size() == 256 || (terminal && line_end)) answer_batch();
  }
  if (!batch.empty()) answer_batch();
  return any;
}

/// Loads `checkpoint` and checks that its task is a T; UsageError naming what it holds otherwise.
template <class T>
std::pair<std::unique_ptr<zoo::Task>, T*> load_as(const std::string& checkpoint, const std::vector<std::string>& sets,
                                                  const std::string& wanted) {
  zoo::Config cfg;
  auto task = zoo::load_task(checkpoint, sets, &cfg);
  auto* typed = dynamic_cast<T*>(task.get());
  if (!typed) throw zoo::UsageError(checkpoint + ": holds a " + cfg.task() + " run, not " + wanted);
  return {std::move(task), typed};
}

/// Reads one line of `in` into `line` (without its "\n" or "\r\n"); false at the end. A line of
/// `max` characters or more is a UsageError, so `< /dev/zero` is refused rather than read without end.
bool read_line(std::istream& in, std::string& line, size_t max, const std::string& command, const std::string& what) {
  line.clear();
  int c;
  bool any = false;
  while ((c = in.get()) != std::char_traits<char>::eof()) {
    any = true;
    if (c == '\n') break;
    line.push_back(static_cast<char>(c));
    if (line.size() >= max)
      throw zoo::UsageError("zoo " + command + ": a line on standard input runs to " + std::to_string(max) +
                            " characters or more; give one " + what + " per line");
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return any;
}

/// `answer` for standard input's lines, a line an input (`what`, named in zoo COMMAND's messages),
/// 256 at a time as they come; false when standard input held none.
template <class Answer>
bool answer_lines(const std::string& command, const std::string& what, Answer answer) {
  auto read = [&](std::string& line, bool& line_end) {
    return line_end = true, read_line(std::cin, line, 1000000, command, what);
  };
  return answer_stdin(read, answer);
}

/// `answer` for the inputs given as option `option` (in one call), or else for standard input's
/// lines as answer_lines reads them; UsageError(`none`) when there are neither.
template <class Answer>
void answer_inputs(const cxxopts::ParseResult& r, const std::string& option, const std::string& command,
                   const std::string& what, Answer answer, const std::string& none) {
  if (r.count(option)) return answer(r[option].as<std::vector<std::string>>());
  if (!answer_lines(command, what, answer)) throw zoo::UsageError(none);
}

int cmd_g2p(int argc, char** argv) {
  cxxopts::Options o("zoo g2p", "Print the pronunciation (ARPAbet, CMUdict style) of each word with a transformer_g2p "
                                "checkpoint.\n  zoo g2p --checkpoint C WORD...\n  echo ZOOLOGY | zoo g2p --checkpoint C\n"
                                "  zoo g2p --checkpoint C --nbest 3 READ   (READ, READ(1), READ(2): alternates as "
                                "CMUdict writes them)");
  o.add_options()("checkpoint", "transformer_g2p checkpoint", cxxopts::value<std::string>())(
      "words", "words (default: whitespace-separated words read from standard input)",
      cxxopts::value<std::vector<std::string>>())(
      "no-stress", "print the pronunciations without stress marks (how: decode.no_stress)")(
      "nbest", "up to this many different pronunciations a word, best first (the beam search goes on until "
               "decode.beam_size hypotheses have finished: a wider beam gives more to choose from)",
      cxxopts::value<int64_t>()->default_value("1"))(
      "s,set", "override a stored key, e.g. decode.beam_size=1 or train.device=cpu",
      cxxopts::value<std::vector<std::string>>());
  o.parse_positional({"words"});
  auto r = parse(o, argc, argv);
  if (!r.count("checkpoint")) throw zoo::UsageError("zoo g2p: --checkpoint is required (a transformer_g2p run's best.pt)");
  const auto nbest = whole_option(r, "nbest");
  if (nbest < 1) throw zoo::UsageError("--nbest " + std::to_string(nbest) + ": expected at least 1 pronunciation a word");
  auto sets = r.count("set") ? r["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
  auto [task, g2p] = load_as<zoo::G2PTask>(r["checkpoint"].as<std::string>(), sets, "a G2P model (transformer_g2p)");
  torch::NoGradGuard no_grad;
  const bool no_stress = flag_on(r, "no-stress");
  auto emit = [&](const std::string& word, const std::vector<std::vector<std::string>>& prons) {
    std::string upper = word;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (size_t k = 0; k < prons.size(); ++k) {  // CMUdict's alternates: WORD, WORD(1), WORD(2), ...
      std::cout << upper << (k ? "(" + std::to_string(k) + ")" : std::string()) << " ";
      for (const auto& p : prons[k]) std::cout << " " << p;
      std::cout << "\n";
    }
  };
  auto print = [&](const std::vector<std::string>& words) {
    std::vector<std::vector<std::vector<std::string>>> prons;
    try {
      prons = g2p->pronounce_nbest(words, no_stress, nbest);
    } catch (const zoo::UsageError&) {
      // A word the model refuses: the words before it are answered first, as fill-mask, zero-shot
      // and embed answer the inputs before a bad one, and then its error ends the command.
      if (words.size() == 1) throw;
      for (const auto& w : words) emit(w, g2p->pronounce_nbest({w}, no_stress, nbest).front());
      return;
    }
    for (size_t i = 0; i < words.size(); ++i) emit(words[i], prons[i]);
  };
  if (r.count("words")) {
    print(r["words"].as<std::vector<std::string>>());
    return kExitOk;
  }
  // A "word" is cut at 1,000 characters, which the model refuses as too long, rather than read
  // without end.
  auto read_word = [](std::string& w, bool& line_end) {
    if (!(std::cin >> std::setw(1000) >> w)) return false;
    if (w.size() == 1000)
      throw zoo::UsageError("zoo g2p: a word on standard input runs to 1,000 characters or more; give words (letters "
                            "A-Z and the apostrophe) separated by spaces or new lines");
    line_end = std::cin.peek() == '\n';
    return true;
  };
  if (!answer_stdin(read_word, print))
    throw zoo::UsageError("zoo g2p: no words given (pass them as arguments or on standard input)");
  return kExitOk;
}

int cmd_fill_mask(int argc, char** argv) {
  cxxopts::Options o("zoo fill-mask",
                     "Print the most probable tokens for each [MASK] in a text with a bert_mlm checkpoint.\n"
                     "  zoo fill-mask --checkpoint C \"The [MASK] is barking loudly.\"\n"
                     "    [MASK] 1:  token probability  token probability ...   (a line per [MASK])\n"
                     "  zoo fill-mask --checkpoint C < texts.txt   (a text a line; an empty line gets an empty line)\n"
                     "    one line per text, in order: the text, then for each [MASK] its tokens and probabilities, "
                     "tab-separated");
  o.add_options()("checkpoint", "bert_mlm checkpoint", cxxopts::value<std::string>())(
      "text", "text with one or more [MASK] tokens (default: texts from standard input, one a line)",
      cxxopts::value<std::vector<std::string>>())(
      "top", "tokens shown per [MASK]", cxxopts::value<int64_t>()->default_value("5"))(
      "s,set", "override a stored key, e.g. train.device=cpu", cxxopts::value<std::vector<std::string>>());
  o.parse_positional({"text"});
  auto r = parse(o, argc, argv);
  if (!r.count("checkpoint")) throw zoo::UsageError("zoo fill-mask: --checkpoint is required (a bert_mlm run's best.pt)");
  const auto k = whole_option(r, "top");
  if (k < 1) throw zoo::UsageError("--top " + std::to_string(k) + ": expected at least 1");
  auto sets = r.count("set") ? r["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
  auto [task, mlm] = load_as<zoo::MaskedLanguageModelTask>(r["checkpoint"].as<std::string>(), sets,
                                                           "a masked language model (bert_mlm)");
  std::ostringstream out;
  out << std::fixed << std::setprecision(3);
  if (r.count("text")) {  // one text, its words as the arguments
    std::string text;
    for (const auto& t : r["text"].as<std::vector<std::string>>()) text += (text.empty() ? "" : " ") + t;
    const auto fills = mlm->fill_mask(text, k);
    for (size_t m = 0; m < fills.size(); ++m) {
      out << "[MASK] " << m + 1 << ":";
      for (const auto& [token, p] : fills[m]) out << "  " << token << " " << p;
      out << "\n";
    }
    std::cout << out.str() << std::flush;
    return kExitOk;
  }
  int64_t done = 0;  // texts answered
  auto print = [&](const std::vector<std::string>& texts) {
    out.str("");
    for (const auto& text : texts) {
      const auto at = "zoo fill-mask: line " + std::to_string(++done) + " of standard input: ";
      if (text.empty()) {  // an empty line (a file's last, say) gets one, so that line n answers line n
        out << "\n";
        continue;
      }
      std::vector<std::vector<std::pair<std::string, double>>> fills;
      try {
        if (text.find('\t') != std::string::npos)
          throw zoo::UsageError("holds a tab, which separates the output's fields; give texts without tabs");
        fills = mlm->fill_mask(text, k);
      } catch (const zoo::UsageError& e) {
        std::cout << out.str();  // the lines before it are answered
        throw zoo::UsageError(at + e.what());
      }
      out << text;
      for (const auto& row : fills) {
        out << "\t";
        for (size_t j = 0; j < row.size(); ++j) out << (j ? " " : "") << row[j].first << " " << row[j].second;
      }
      out << "\n";
    }
    std::cout << out.str();
  };
  if (!answer_lines("fill-mask", "text", print))
    throw zoo::UsageError("zoo fill-mask: give a text with [MASK], e.g. \"The [MASK] is barking.\" (as the arguments, "
                          "or texts on standard input, one a line)");
  return kExitOk;
}

/// The grey 28x28 images (N, 1, 28, 28) of image files, up to the first that can't be read
/// (undefined when that is the first), and that file's UsageError, so that the files before it
/// are answered before the command fails. `done` files were read before these (for the input
/// numbers in messages). An empty name or one holding a NUL byte is refused too.
std::pair<torch::Tensor, std::exception_ptr> read_images(const std::vector<std::string>& paths, int64_t done,
                                                         const std::string& command) {
  std::vector<torch::Tensor> xs;
  std::exception_ptr bad;
  try {
    for (const auto& path : paths) {
      const auto at = std::to_string(done + static_cast<int64_t>(xs.size()) + 1);
      if (path.empty())
        throw zoo::UsageError("zoo " + command + ": input " + at + " is an empty file name (an empty argument or line); "
                              "give image files");
      if (path.find('\0') != std::string::npos)  // only a line of standard input can hold one
        throw zoo::UsageError("zoo " + command + ": input " + at + " holds a NUL byte, which no file name has; give one "
                              "image file a line");
      xs.push_back(zoo::read_image_gray(path, 28));
    }
  } catch (const zoo::UsageError&) {
    bad = std::current_exception();
  }
  return {xs.empty() ? torch::Tensor() : torch::cat(xs, 0), bad};
}

int cmd_zero_shot(int argc, char** argv) {
  cxxopts::Options o("zoo zero-shot",
                     "Classify images by text labels alone with a clip_fashion_mnist checkpoint.\n"
                     "  zoo zero-shot --checkpoint C --image shoe.png --labels \"sneaker,bag,coat\"\n"
                     "    each label's probability, most probable first\n"
                     "  zoo zero-shot --checkpoint C --labels \"sneaker,bag,coat\" shoe.png bag.png\n"
                     "  ls *.png | zoo zero-shot --checkpoint C --labels \"sneaker,bag,coat\"\n"
                     "    one line per image, in order: file, its most probable label and that probability, "
                     "tab-separated\n"
                     "An image (PNG, JPEG, BMP, GIF; up to 64 million pixels, any channels) is made grey and 28x28; "
                     "like Fashion-MNIST, a light item on a dark ground.");
  o.add_options()("checkpoint", "clip_fashion_mnist checkpoint", cxxopts::value<std::string>())(
      "image", "one image file: each label's probability", cxxopts::value<std::string>())(
      "images", "image files: one line each (default: standard input, one file a line)",
      cxxopts::value<std::vector<std::string>>())(
      "labels", "comma-separated labels", cxxopts::value<std::string>())(
      "s,set", "override a stored key, e.g. train.device=cpu", cxxopts::value<std::vector<std::string>>());
  o.parse_positional({"images"});
  auto r = parse(o, argc, argv);
  if (!r.count("checkpoint")) throw zoo::UsageError("zoo zero-shot: --checkpoint is required (a clip_fashion_mnist run's best.pt)");
  if (!r.count("labels")) throw zoo::UsageError("zoo zero-shot: --labels is required, e.g. --labels \"sneaker,bag,coat\"");
  if (r.count("image") && r.count("images"))
    throw zoo::UsageError("zoo zero-shot: give one image with --image, or image files as arguments, not both");
  std::vector<std::string> labels;
  for (const auto& l : zoo::split_commas(r["labels"].as<std::string>())) {
    const auto b = l.find_first_not_of(" \t"), e = l.find_last_not_of(" \t");
    labels.push_back(b == std::string::npos ? "" : l.substr(b, e - b + 1));
  }
  if (labels.size() < 2) throw zoo::UsageError("--labels: give at least two comma-separated labels");
  for (size_t i = 0; i < labels.size(); ++i) {  // one printed line per label, each label once
    if (labels[i].empty())
      throw zoo::UsageError("--labels: label " + std::to_string(i + 1) + " is empty or blank (two commas in a row, or "
                            "one at an end?); separate the labels with single commas");
    if (std::any_of(labels[i].begin(), labels[i].end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
      throw zoo::UsageError("--labels: label " + std::to_string(i + 1) + " holds a control character (such as a tab "
                            "or line break); separate the labels with commas");
    if (std::find(labels.begin(), labels.begin() + static_cast<std::ptrdiff_t>(i), labels[i]) != labels.begin() + static_cast<std::ptrdiff_t>(i))
      throw zoo::UsageError("--labels: '" + labels[i] + "' is given twice; give each label once");
  }
  torch::Tensor image;  // --image's, read before the checkpoint: a bad file fails at once
  if (r.count("image")) image = zoo::read_image_gray(r["image"].as<std::string>(), 28);
  auto sets = r.count("set") ? r["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
  auto [task, clip] = load_as<zoo::ZeroShotClassifier>(r["checkpoint"].as<std::string>(), sets,
                                                       "a CLIP model (clip_fashion_mnist)");
  if (image.defined()) {
    const auto p = clip->zero_shot(image, labels);
    std::vector<size_t> order(labels.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
    for (auto i : order) std::cout << std::fixed << std::setprecision(4) << p[i] << "  " << labels[i] << "\n";
    return kExitOk;
  }
  const auto classes = clip->label_embeddings(labels);  // once, for every image
  int64_t done = 0;  // images answered
  auto print = [&](const std::vector<std::string>& files) {
    for (const auto& f : files)  // the output's fields are tab-separated, a line each
      if (f.find_first_of("\t\n\r") != std::string::npos)
        throw zoo::UsageError(f + ": the file's name holds a tab or line break, which zero-shot's "
                              "tab-separated lines can't show; rename it, or give it alone with --image");
    const auto [images, bad] = read_images(files, done, "zero-shot");
    if (images.defined()) {  // the files before a bad one are answered
      const auto [best_p, best] = clip->classify(images, classes).max(1);
      std::ostringstream out;
      out << std::fixed << std::setprecision(4);
      for (int64_t i = 0; i < images.size(0); ++i)
        out << files[static_cast<size_t>(i)] << "\t" << labels[static_cast<size_t>(best[i].item<int64_t>())] << "\t"
            << best_p[i].item<double>() << "\n";
      std::cout << out.str();
      done += images.size(0);
    }
    if (bad) std::rethrow_exception(bad);
  };
  answer_inputs(r, "images", "zero-shot", "image file", print,
                "zoo zero-shot: no image given (--image FILE, image files as arguments, or their names on standard "
                "input, one a line)");
  return kExitOk;
}

int cmd_embed(int argc, char** argv) {
  cxxopts::Options o("zoo embed",
                     "Print a vector for each image file or text: one line of numbers per input, in order.\n"
                     "  zoo embed --checkpoint C --images shoe.png bag.png\n"
                     "  zoo embed --checkpoint C --texts \"a photo of a sneaker\" \"a bag\"\n"
                     "  ls *.png | zoo embed --checkpoint C --images   (inputs from standard input, one a line)\n"
                     "What a vector is:\n"
                     "  clip_fashion_mnist: the joint image-text space, unit length (images, or texts cut at "
                     "model.context_length tokens)\n"
                     "  vit_fashion_mnist: the [CLS] feature before the head (images)\n"
                     "  vae_fashion_mnist: the mean of q(z|x) (images)\n"
                     "  bert_mlm, bert_pos, bert_spam: the mean of the last layer's token states (texts, cut at "
                     "data.max_length tokens)\n"
                     "Images (PNG, JPEG, BMP, GIF; up to 64 million pixels, any channels) are made grey and 28x28, as zoo "
                     "zero-shot's are.\n"
                     "A text that starts with '-' goes after --: zoo embed --checkpoint C --texts -- \"-5 degrees\"");
  o.add_options()("checkpoint", "checkpoint of a clip, vit, vae or bert run", cxxopts::value<std::string>())(
      "images", "the inputs are image files (the default for vit and vae checkpoints)")(
      "texts", "the inputs are texts (the default for bert checkpoints)")(
      "inputs", "image files or texts (default: standard input, one per line)", cxxopts::value<std::vector<std::string>>())(
      "s,set", "override a stored key, e.g. train.device=cpu", cxxopts::value<std::vector<std::string>>());
  o.parse_positional({"inputs"});
  auto r = parse(o, argc, argv);
  if (!r.count("checkpoint"))
    throw zoo::UsageError("zoo embed: --checkpoint is required (a clip, vit, vae or bert run's best.pt)");
  if (flag_on(r, "images") && flag_on(r, "texts"))
    throw zoo::UsageError("zoo embed: give --images or --texts, not both (embed each kind in its own call)");
  const auto checkpoint = r["checkpoint"].as<std::string>();
  auto sets = r.count("set") ? r["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
  zoo::Config cfg;
  auto task = zoo::load_task(checkpoint, sets, &cfg);
  auto* embedder = dynamic_cast<zoo::Embedder*>(task.get());
  if (!embedder)
    throw zoo::UsageError(checkpoint + ": holds a " + cfg.task() + " run, which zoo embed does not take; it takes "
                          "clip_fashion_mnist, vit_fashion_mnist, vae_fashion_mnist and bert_* checkpoints");
  bool images = embedder->embeds_images() && !embedder->embeds_texts();
  if (flag_on(r, "images") || flag_on(r, "texts")) {
    images = flag_on(r, "images");
    if (images ? !embedder->embeds_images() : !embedder->embeds_texts())
      throw zoo::UsageError(checkpoint + ": a " + cfg.task() + " model embeds " + (images ? "texts" : "images") +
                            ", not " + (images ? "images" : "texts") + "; drop " + (images ? "--images" : "--texts"));
  } else if (embedder->embeds_images() && embedder->embeds_texts()) {
    throw zoo::UsageError("zoo embed: a " + cfg.task() + " model embeds images and texts; say which the inputs are "
                          "with --images or --texts");
  }
  int64_t done = 0;  // inputs answered
  auto print = [&](const std::vector<std::string>& inputs) {
    torch::Tensor v;
    std::exception_ptr bad;  // an image file that can't be read: the files before it are answered
    if (images) {
      torch::Tensor x;
      std::tie(x, bad) = read_images(inputs, done, "embed");
      if (x.defined()) v = embedder->embed_images(x);
    } else {
      v = embedder->embed_texts(inputs);
    }
    if (!v.defined()) std::rethrow_exception(bad);
    v = v.to(torch::kCPU, torch::kFloat).contiguous();
    const float* p = v.data_ptr<float>();
    std::ostringstream out;
    out << std::setprecision(std::numeric_limits<float>::max_digits10);  // each float32 read back exactly
    for (int64_t i = 0; i < v.size(0); ++i) {
      for (int64_t j = 0; j < v.size(1); ++j) out << (j ? " " : "") << p[i * v.size(1) + j];
      out << "\n";
    }
    std::cout << out.str();
    done += v.size(0);
    if (bad) std::rethrow_exception(bad);
  };
  const std::string what = images ? "image file" : "text";  // standard input: one a line
  answer_inputs(r, "inputs", "embed", what, print,
                "zoo embed: no inputs given (pass " + what + "s as arguments or on standard input, one a line)");
  return kExitOk;
}

/// An --out that zoo writes a checkpoint to may not take a name the trainer gives its own (best.pt,
/// step-N.pt): a run's pruning and resuming would take it for one of them.
void check_not_trainer_name(const std::string& out, const std::string& example) {
  const auto name = fs::path(out).filename().string();
  if (name == "best.pt" || zoo::step_of_checkpoint_name(out) >= 0)
    throw zoo::UsageError("--out " + out + ": " + name + " is a name the trainer gives its own checkpoints; give "
                          "another, e.g. " + example);
}

int cmd_average(int argc, char** argv) {
  cxxopts::Options o("zoo average", "Average the weights of checkpoints of one run into one checkpoint, as the "
                                    "Transformer paper does (Vaswani et al. 2017, Sec. 6.1: the last 5).\n"
                                    "  zoo average --run-dir D [--last N] --out F\n  zoo average C1 C2 ... --out F\n"
                                    "The output holds the last checkpoint's config, step and data state; evaluate it with "
                                    "zoo eval like any checkpoint.");
  o.add_options()("checkpoints", "checkpoint files, oldest first", cxxopts::value<std::vector<std::string>>())(
      "run-dir", "average the run's last step checkpoints", cxxopts::value<std::string>())(
      "last", "with --run-dir: how many step checkpoints (default: up to 5, as many as the run keeps)",
      cxxopts::value<int64_t>())(
      "out", "output checkpoint file", cxxopts::value<std::string>());
  o.parse_positional({"checkpoints"});
  auto r = parse(o, argc, argv);
  if (!r.count("out")) throw zoo::UsageError("zoo average: --out is required (e.g. --out runs/RUN/average.pt)");
  std::vector<std::string> inputs;
  if (r.count("run-dir") && r.count("checkpoints"))
    throw zoo::UsageError("zoo average: give checkpoint files or --run-dir, not both");
  if (r.count("last") && !r.count("run-dir"))
    throw zoo::UsageError("--last goes with --run-dir; without it, list the checkpoints to average");
  if (r.count("run-dir")) {
    const auto dir = r["run-dir"].as<std::string>();
    if (!fs::is_directory(dir)) throw zoo::UsageError("--run-dir " + dir + ": no such run directory");
    auto all = zoo::list_step_checkpoints((fs::path(dir) / "checkpoints").string());
    const auto last = r.count("last") ? whole_option(r, "last") : std::clamp<int64_t>(static_cast<int64_t>(all.size()), 2, 5);
    if (last < 2) throw zoo::UsageError("--last " + std::to_string(last) + ": average at least 2 checkpoints");
    if (all.empty() && fs::is_directory(fs::path(dir) / "restarts"))
      throw zoo::UsageError("--run-dir " + dir + ": a run of restarts keeps its step checkpoints in each restart's "
                            "folder; pass --run-dir " + (fs::path(dir) / "restarts" / "seed-S").string());
    if (all.size() < 2)
      throw zoo::UsageError("--run-dir " + dir + ": holds " + std::to_string(all.size()) + " step checkpoint" +
                            (all.size() == 1 ? "" : "s") + "; averaging needs at least 2 (train.keep_last sets how "
                            "many a run keeps)");
    if (static_cast<int64_t>(all.size()) < last)
      throw zoo::UsageError("--run-dir " + dir + ": holds " + std::to_string(all.size()) + " step checkpoints, fewer than --last " +
                            std::to_string(last) + "; pass a smaller --last (train.keep_last sets how many a run keeps)");
    inputs.assign(all.end() - last, all.end());
  } else if (r.count("checkpoints")) {
    inputs = r["checkpoints"].as<std::vector<std::string>>();
  } else {
    throw zoo::UsageError("zoo average: give the checkpoints to average, or --run-dir D");
  }
  const auto out = r["out"].as<std::string>();
  check_not_trainer_name(out, "average.pt");
  for (const auto& in : inputs) check_output(out, "--out", in, /*renamed_over=*/true);
  zoo::average_checkpoints(inputs, out);
  std::cout << "wrote " << out << ": the average of " << inputs.size() << " checkpoints, " << inputs.front() << " to "
            << inputs.back() << "\n";
  return kExitOk;
}

int cmd_export(int argc, char** argv) {
  cxxopts::Options o("zoo export", "Write the weights a checkpoint is evaluated with (its EMA weights where the run "
                                   "kept an EMA) with its config and data state, and nothing a run resumes from (optimizer "
                                   "state, RNG state, a second copy of the weights): a smaller file that zoo eval, sample, g2p "
                                   "and the others read like any checkpoint.\n  zoo export --checkpoint C --out F");
  o.add_options()("checkpoint", "checkpoint file", cxxopts::value<std::string>())(
      "out", "output checkpoint file", cxxopts::value<std::string>());
  auto r = parse(o, argc, argv);
  if (!r.count("checkpoint")) throw zoo::UsageError("zoo export: --checkpoint is required");
  if (!r.count("out")) throw zoo::UsageError("zoo export: --out is required (e.g. --out runs/RUN/weights.pt)");
  const auto in = r["checkpoint"].as<std::string>(), out = r["out"].as<std::string>();
  check_not_trainer_name(out, "weights.pt");
  check_output(out, "--out", in, /*renamed_over=*/true);
  const auto step = zoo::export_checkpoint(in, out);
  std::error_code ec;
  const auto before = fs::file_size(in, ec), after = fs::file_size(out, ec);
  std::cout << "wrote " << out << ": the weights of " << in << " (step " << step << "), " << after << " bytes against "
            << before << "\n";
  return kExitOk;
}

/// `zoo list TASK`: every key the task's configs take, with its default, range and meaning.
void list_keys(const std::string& name) {
  const auto& task = zoo::find_task(name);
  zoo::Schema schema;
  zoo::add_common_keys(schema);
  task.add_keys(schema);
  std::cout << task.name << ": " << task.description
            << "\nkeys: kind, the value when a config leaves the key out (shipped configs set many), allowed values; "
               "meaning\n";
  for (const auto& k : schema.keys()) {
    std::string allowed;
    if (!k.choices.empty()) {
      for (const auto& c : k.choices) allowed += (allowed.empty() ? "" : "|") + c;
    } else if (k.min || k.max) {
      auto bound = [&](const std::optional<double>& b) {
        if (!b) return std::string();
        return k.kind == zoo::Kind::kInt ? std::to_string(static_cast<int64_t>(*b)) : zoo::show_value(zoo::Value(*b));
      };
      allowed = k.max ? bound(k.min) + ".." + bound(k.max) : ">= " + bound(k.min);
    }
    auto def = zoo::show_value(k.default_value);
    if (k.kind == zoo::Kind::kString && def.empty()) def = "\"\"";
    static const char* kinds[] = {"bool", "int", "float", "string"};
    std::cout << "  " << std::left << std::setw(30) << k.key << " " << kinds[static_cast<int>(k.kind)] << ", " << def
              << (allowed.empty() ? "" : "; " + allowed) << (k.fixed ? "; fixed by a checkpoint" : "") << "\n      "
              << k.help << "\n";
  }
}

int cmd_list(int argc, char** argv) {
  cxxopts::Options o("zoo list", "List the tasks and the configs under ./configs; with a task's name, its config keys.\n"
                                 "  zoo list\n  zoo list vit_fashion_mnist");
  o.add_options()("task", "a task's name: list its config keys", cxxopts::value<std::string>());
  o.parse_positional({"task"});
  o.positional_help("[TASK]");
  auto r = parse(o, argc, argv);
  if (r.count("task")) {
    list_keys(r["task"].as<std::string>());
    return kExitOk;
  }
  std::cout << "tasks:\n";
  for (const auto& t : zoo::task_registry()) std::cout << "  " << std::left << std::setw(22) << t.name << t.description << "\n";
  std::cout << "configs:\n";
  std::vector<std::string> files;
  if (fs::is_directory("configs"))
    for (const auto& e : fs::directory_iterator("configs"))
      if (e.path().extension() == ".yaml" && e.is_regular_file()) files.push_back(e.path().string());
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
      std::cout << kUsage << std::flush;
      check_stdout();
      return kExitOk;
    }
    // Every command's output reaches standard output, or the command fails (check_stdout).
    auto run = [&](int (*command)(int, char**)) {
      int rc;
      try {
        rc = command(argc - 1, argv + 1);
      } catch (...) {
        std::cout.flush();  // what was answered goes out before the error is printed
        throw;
      }
      std::cout.flush();
      check_stdout();
      return rc;
    };
    if (cmd == "train") return run(cmd_train);
    if (cmd == "eval") return run(cmd_eval);
    if (cmd == "sample") return run(cmd_sample);
    if (cmd == "list") return run(cmd_list);
    if (cmd == "g2p") return run(cmd_g2p);
    if (cmd == "fill-mask") return run(cmd_fill_mask);
    if (cmd == "zero-shot") return run(cmd_zero_shot);
    if (cmd == "embed") return run(cmd_embed);
    if (cmd == "average") return run(cmd_average);
    if (cmd == "export") return run(cmd_export);
    std::cerr << "zoo: unknown command '" << cmd
              << "' (commands: train, eval, sample, g2p, fill-mask, zero-shot, embed, average, export, list; see zoo --help)\n";
    return kExitUsage;
  } catch (const zoo::UsageError& e) {
    std::cerr << "zoo: error: " << e.what() << "\n";
    return kExitUsage;
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "zoo " << cmd << ": " << e.what() << " (see zoo " << cmd << " --help)\n";
    return kExitUsage;
  } catch (const fs::filesystem_error& e) {  // a path given (or made from one) that cannot be used
    if (e.path1().empty()) std::cerr << "zoo: error: " << e.what() << "\n";
    else std::cerr << "zoo: error: " << e.path1().string() << ": " << e.code().message() << "; check the path\n";
    return kExitUsage;
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    what = what.substr(0, what.find('\n'));
    // The config asked for more memory than there is (CPU: DefaultCPUAllocator; CUDA: c10::OutOfMemoryError).
    if (what.find("can't allocate memory") != std::string::npos || what.find("out of memory") != std::string::npos) {
      std::cerr << "zoo: error: out of memory (" << what << "); " << kLowerMemory << "\n";
      return kExitUsage;
    }
    std::cerr << "zoo: failed: " << what << "\n";
    return kExitFailure;
  } catch (const std::bad_alloc&) {
    std::cerr << "zoo: error: out of memory; " << kLowerMemory << "\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "zoo: failed: " << e.what() << "\n";
    return kExitFailure;
  }
}
