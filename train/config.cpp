#include "train/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <map>
#include <sstream>
#include <thread>

#include "train/tasks/task.h"

namespace zoo {
namespace {

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kBool: return "true or false";
    case Kind::kInt: return "an integer";
    case Kind::kFloat: return "a number";
    case Kind::kString: return "a string";
  }
  return "?";
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1] ? 1u : 0u)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

/// What to do about an unknown key: the nearest known one, else where the keys are listed.
std::string suggestion(const Schema& schema, const std::string& key, const std::string& task) {
  std::string best;
  size_t best_d = 4;
  for (const auto& k : schema.keys()) {
    auto d = edit_distance(key, k.key);
    if (d < best_d) best_d = d, best = k.key;
  }
  return best.empty() ? " (`zoo list " + task + "` lists the task's keys)" : " (did you mean " + best + "?)";
}

/// Whether `text`'s digits start with a 0 followed by another digit ("010", "-00.5"), with `why`.
bool leading_zero(const std::string& text, std::string& why) {
  const size_t at = !text.empty() && (text[0] == '-' || text[0] == '+') ? 1 : 0;
  if (text.size() <= at + 1 || text[at] != '0' || !std::isdigit(static_cast<unsigned char>(text[at + 1]))) return false;
  why = "'" + text + "' has a leading zero, which YAML 1.1 and bash read as octal (010 is 8); write it without";
  return true;
}

}  // namespace

std::optional<int64_t> parse_whole(const std::string& text, std::string& why) {
  const size_t sign = !text.empty() && (text[0] == '-' || text[0] == '+') ? 1 : 0;
  if (text.size() == sign || !std::all_of(text.begin() + static_cast<std::ptrdiff_t>(sign), text.end(),
                                          [](unsigned char c) { return std::isdigit(c); }))
    return std::nullopt;
  if (leading_zero(text, why)) return std::nullopt;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), nullptr, 10);
  if (errno == ERANGE) {
    why = "'" + text + "' is out of range (at most 9223372036854775807 in magnitude)";
    return std::nullopt;
  }
  return static_cast<int64_t>(v);
}

std::optional<double> parse_real(const std::string& text, std::string& why) {
  // strtod's decimal forms only: a sign, digits with one point, an exponent (no hex, inf, nan, blanks)
  if (text.empty() || text.find_first_not_of("0123456789+-.eE") != std::string::npos) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (*end != '\0' || leading_zero(text, why)) return std::nullopt;
  if (std::fabs(v) > std::numeric_limits<float>::max()) {  // strtod's overflow too: HUGE_VAL
    why = "'" + text + "' is out of range (at most 3.4e38 in magnitude)";
    return std::nullopt;
  }
  if (errno == ERANGE && v == 0) {  // strtod's underflow
    why = "'" + text + "' is too small to be told from 0; give 0 or a larger value";
    return std::nullopt;
  }
  return v;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> items{""};
  for (char c : text) {
    if (c == ',') items.emplace_back();
    else items.back() += c;
  }
  return items;
}

namespace {

/// Parses a YAML scalar's text into the key's kind; empty optional + message on failure.
std::optional<Value> parse_scalar(const KeySpec& spec, const std::string& text, std::string& why) {
  switch (spec.kind) {
    case Kind::kBool: {
      std::string t = text;
      std::transform(t.begin(), t.end(), t.begin(), ::tolower);
      if (t == "true" || t == "yes" || t == "on") return Value(true);
      if (t == "false" || t == "no" || t == "off") return Value(false);
      break;
    }
    case Kind::kInt:
      if (auto v = parse_whole(text, why)) return Value(*v);
      if (!why.empty()) return std::nullopt;
      break;
    case Kind::kFloat:
      if (auto v = parse_real(text, why)) return Value(*v);
      if (!why.empty()) return std::nullopt;
      break;
    case Kind::kString:
      return Value(text);
  }
  why = std::string("expected ") + kind_name(spec.kind) + ", got '" + text + "'";
  return std::nullopt;
}

/// Range, choice and custom checks; returns the problem or "".
std::string check_value(const KeySpec& spec, const Value& v) {
  auto num = [&]() -> std::optional<double> {
    if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
    if (auto* d = std::get_if<double>(&v)) return *d;
    return std::nullopt;
  }();
  std::ostringstream os;
  if (num && spec.min && *num < *spec.min) {
    os << "must be at least " << show_value(*spec.min) << ", got " << show_value(*num);
    return os.str();
  }
  if (num && spec.max && *num > *spec.max) {
    os << "must be at most " << show_value(*spec.max) << ", got " << show_value(*num);
    return os.str();
  }
  if (!spec.choices.empty()) {
    const auto& s = std::get<std::string>(v);
    if (std::find(spec.choices.begin(), spec.choices.end(), s) == spec.choices.end()) {
      os << "must be one of";
      for (const auto& c : spec.choices) os << " " << c;
      os << ", got '" << s << "'";
      return os.str();
    }
  }
  if (spec.check) return spec.check(v);
  return "";
}

struct Located {
  std::string origin;
  int line = 0;  // 1-based; 0 when unknown
  std::string where() const { return line > 0 ? origin + ":" + std::to_string(line) : origin; }
};

[[noreturn]] void fail(const Located& at, const std::string& key, const std::string& what) {
  throw UsageError(at.where() + ": " + key + ": " + what);
}

std::string threads_check(const Value& v) {
  const auto& s = std::get<std::string>(v);
  if (s == "auto") return "";
  std::string why;
  const auto n = parse_whole(s, why);
  if (n && *n >= 1 && *n <= 1024) return "";
  return "must be 'auto' or a thread count from 1 to 1024, got '" + s + "'" + (why.empty() ? "" : ": " + why);
}

std::string device_check(const Value& v) {
  const auto& s = std::get<std::string>(v);
  if (s == "auto" || s == "cpu" || s == "cuda") return "";
  // N fits c10::DeviceIndex, an 8-bit integer.
  std::string why;
  if (s.rfind("cuda:", 0) == 0 && s.size() <= 8 && s.find_first_not_of("0123456789", 5) == std::string::npos)
    if (auto n = parse_whole(s.substr(5), why); n && *n <= 127) return "";
  return "must be auto, cpu, cuda or cuda:N (N from 0 to 127), got '" + s + "'";
}

double number(const Value& v) {
  return std::holds_alternative<double>(v) ? std::get<double>(v) : static_cast<double>(std::get<int64_t>(v));
}

/// Adam's betas: its bias corrections divide by 1 - beta^t.
std::string below_one(const Value& v) {
  return number(v) < 1.0 ? "" : "must be below 1 (Adam divides by 1 - beta^t), e.g. 0.9 or 0.999";
}

/// Adam's epsilon: it divides by sqrt(v) + eps, and v is 0 where a gradient is.
std::string above_zero_eps(const Value& v) {
  // Below float's smallest normal eps is 0, or nearly, in the float tensors it is added to.
  return number(v) >= std::numeric_limits<float>::min()
             ? ""
             : "must be above 0, and at least float's smallest normal 1.2e-38 (Adam divides by sqrt(v) + eps in "
               "float, and v is 0 where a gradient is), e.g. 1e-8";
}

/// KeySpec::fixed's default: model.* and diffusion.* keys, but not dropout rates (off in evaluation).
bool shapes_checkpoint(const std::string& key) {
  return (key.rfind("model.", 0) == 0 || key.rfind("diffusion.", 0) == 0) && key.find("dropout") == std::string::npos;
}

}  // namespace

Schema& Schema::add_bool(const std::string& key, bool def, std::string help) {
  keys_.push_back({key, Kind::kBool, def, std::move(help), {}, {}, {}, nullptr, shapes_checkpoint(key)});
  return *this;
}
Schema& Schema::add_int(const std::string& key, int64_t def, std::string help, std::optional<double> min,
                        std::optional<double> max) {
  keys_.push_back({key, Kind::kInt, def, std::move(help), min, max, {}, nullptr, shapes_checkpoint(key)});
  return *this;
}
Schema& Schema::add_float(const std::string& key, double def, std::string help, std::optional<double> min,
                          std::optional<double> max) {
  keys_.push_back({key, Kind::kFloat, def, std::move(help), min, max, {}, nullptr, shapes_checkpoint(key)});
  return *this;
}
Schema& Schema::add_string(const std::string& key, std::string def, std::string help,
                           std::vector<std::string> choices, std::function<std::string(const Value&)> check) {
  keys_.push_back({key, Kind::kString, std::move(def), std::move(help), {}, {}, std::move(choices), std::move(check), shapes_checkpoint(key)});
  return *this;
}
Schema& Schema::fixed(const std::string& key) {
  for (auto& k : keys_)
    if (k.key == key) {
      k.fixed = true;
      return *this;
    }
  TORCH_CHECK(false, "zoo: Schema::fixed: ", key, " is not declared (a bug)");
}
Schema& Schema::check(const std::string& key, std::function<std::string(const Value&)> fn) {
  for (auto& k : keys_)
    if (k.key == key) {
      k.check = std::move(fn);
      return *this;
    }
  TORCH_CHECK(false, "zoo: Schema::check: ", key, " is not declared (a bug)");
}
const KeySpec* Schema::find(const std::string& key) const {
  for (const auto& k : keys_)
    if (k.key == key) return &k;
  return nullptr;
}

void add_common_keys(Schema& s) {
  s.add_string("train.device", "auto", "auto (cuda when present), cpu, cuda or cuda:N", {}, device_check)
      .add_string("train.threads", "auto", "intra-op CPU threads: auto (every core) or a count", {}, threads_check)
      .add_int("train.seed", 0, "seed of every random choice (weights, data order, augmentation, dropout)", 0)
      .add_int("train.restarts", 1,
               "runs with seeds seed, seed+1, ...; validation picks one (BERT, Devlin et al. 2018, Sec. 4.1)", 1, 100)
      .add_string("train.restarts_select", "best",
                  "with train.restarts > 1: best (validation picks one restart) or soup (greedy weight average of "
                  "the restarts, Wortsman et al. 2022)",
                  {"best", "soup"})
      .add_bool("train.deterministic", false, "use deterministic algorithms only (slower on CUDA)")
      .add_int("train.steps", 1000, "optimizer steps in the run", 1)
      .add_int("train.batch_size", 128, "examples per micro-batch on each process", 1, int64_t{1} << 24)
      .add_int("train.accumulate", 1, "micro-batches accumulated into one optimizer step", 1, 1024)
      .add_float("train.grad_clip", 1.0, "clip the global gradient norm to this (0 = off)", 0.0)
      .add_string("train.precision", "auto", "fp32, bf16 (autocast; CUDA or CPU) or fp16 (autocast, CUDA only); auto = bf16 on CUDA, fp32 on CPU",
                  {"auto", "fp32", "bf16", "fp16"})
      .add_bool("train.ema", false, "keep an exponential moving average of the weights, used for eval and sampling")
      .add_float("train.ema_decay", 0.999, "EMA decay per step (below 1 when train.ema is on)", 0.0, 1.0)
      .add_int("train.log_every", 50, "steps between progress lines and metrics.jsonl rows", 1)
      .add_int("train.eval_every", 1000, "steps between evaluations on the validation split (0 = only at the end)", 0)
      .add_int("train.sample_every", 0, "steps between writes of samples/ outputs (0 = at each evaluation)", 0)
      .add_int("train.checkpoint_every", 500, "steps between checkpoints", 1)
      .add_int("train.keep_last", 3, "step checkpoints to keep (best.pt is kept besides)", 1)
      .add_string("optim.name", "adamw", "optimizer", {"adamw", "adam", "sgd"})
      .add_float("optim.lr", 1e-3, "peak learning rate", 0.0)
      .add_float("optim.weight_decay", 0.0, "decoupled weight decay (adamw) or L2 penalty (adam, sgd)", 0.0)
      .add_bool("optim.decay_1d", true,
                "weight decay on 1-D parameters too (biases, norm gains, CLIP's temperature), as torch.optim does with "
                "model.parameters(); false decays only parameters of 2+ dimensions (nanoGPT; CLIP Sec. 2.5)")
      .fixed("optim.decay_1d")
      .add_float("optim.beta1", 0.9, "Adam beta1", 0.0, 1.0)
      .add_float("optim.beta2", 0.999, "Adam beta2", 0.0, 1.0)
      .check("optim.beta1", below_one)
      .check("optim.beta2", below_one)
      .add_float("optim.eps", 1e-8, "Adam epsilon", 0.0)
      .check("optim.eps", above_zero_eps)
      .add_float("optim.momentum", 0.9, "SGD momentum", 0.0, 1.0)
      .add_string("optim.schedule", "cosine",
                  "learning-rate schedule after warmup: cosine, constant, or inverse_sqrt (Vaswani et al. Eq. 3)",
                  {"cosine", "constant", "inverse_sqrt"})
      .add_int("optim.warmup_steps", 0, "linear warmup from 0 to optim.lr over this many steps", 0)
      .add_int("optim.cooldown_steps", 0,
               "constant and inverse_sqrt schedules: decay linearly to optim.min_lr over the last this many steps "
               "(Zhai et al. 2022; Hagele et al. 2024)",
               0)
      .add_float("optim.min_lr", 0.0, "floor of the cosine schedule and of the cooldown", 0.0);
}

Config Config::from_file(const std::string& path, const std::vector<std::string>& overrides) {
  if (std::filesystem::is_directory(path))
    throw UsageError(path + ": is a directory; give a config file (configs/*.yaml; `zoo list` shows them)");
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (!ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st))
    throw UsageError(path + ": is not a regular file (a device or a pipe); give a config file (configs/*.yaml)");
  constexpr uintmax_t kMaxConfigBytes = 1 << 20;
  if (!ec && std::filesystem::exists(st) && std::filesystem::file_size(path, ec) > kMaxConfigBytes)
    throw UsageError(path + ": over 1 MiB, too big for a config; give a config file (configs/*.yaml)");
  std::ifstream in(path);
  if (!in) throw UsageError(path + ": cannot read the config file (check the path; `zoo list` shows the shipped configs)");
  std::stringstream ss;
  ss << in.rdbuf();
  return from_yaml(ss.str(), path, overrides);
}

Config Config::from_yaml(const std::string& yaml, const std::string& origin, const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    auto docs = YAML::LoadAll(yaml);
    if (docs.size() > 1)  // yaml-cpp's Load would read the first and drop the rest without a word
      throw UsageError(Located{origin, docs[1].Mark().line + 1}.where() +
                       ": a second YAML document (after a '---' line); a config is one document, keep one");
    if (!docs.empty()) root = docs[0];
  } catch (const YAML::Exception& e) {
    throw UsageError(Located{origin, e.mark.line + 1}.where() + ": not valid YAML: " + e.msg);
  }
  if (!root.IsMap()) throw UsageError(origin + ": expected a YAML mapping with a 'task' key and sections");
  auto task_node = root["task"];
  if (!task_node || task_node.IsNull())
    throw UsageError(origin + ": task: missing; add e.g. 'task: vit_fashion_mnist' (`zoo list` shows the tasks)");
  if (!task_node.IsScalar())
    fail({origin, task_node.Mark().line + 1}, "task", "expected one task name, e.g. 'task: vit_fashion_mnist'");
  Config cfg;
  try {
    cfg.task_ = find_task(task_node.Scalar()).name;
  } catch (const UsageError& e) {
    fail({origin, task_node.Mark().line + 1}, "task", e.what());
  }
  add_common_keys(cfg.schema_);
  find_task(cfg.task_).add_keys(cfg.schema_);
  for (const auto& k : cfg.schema_.keys()) cfg.values_[k.key] = k.default_value;

  std::map<std::string, int> seen;  // section or key -> the line it was first given on
  auto once = [&](const Located& at, const std::string& name) {
    if (auto [it, fresh] = seen.emplace(name, at.line); !fresh)
      fail(at, name, "given twice (also on line " + std::to_string(it->second) + "); keep one");
  };
  for (const auto& section : root) {
    const auto name = section.first.Scalar();
    Located at{origin, section.first.Mark().line + 1};
    once(at, name);
    if (name == "task") continue;
    bool known_section = false;
    for (const auto& k : cfg.schema_.keys()) known_section |= k.key.rfind(name + ".", 0) == 0;
    if (!known_section) fail(at, name, "unknown section (sections: train, optim, and the task's own: `zoo list " + cfg.task_ + "` lists them)");
    if (!section.second.IsMap()) fail(at, name, "expected a mapping of keys");
    for (const auto& kv : section.second) {
      const auto key = name + "." + kv.first.Scalar();
      Located kat{origin, kv.first.Mark().line + 1};
      const auto* spec = cfg.schema_.find(key);
      if (!spec) fail(kat, key, "unknown key" + suggestion(cfg.schema_, key, cfg.task_));
      once(kat, key);
      if (kv.second.IsNull())
        fail(kat, key,
             std::string("no value; give ") + kind_name(spec->kind) +
                 (spec->kind == Kind::kString ? " (\"\" for none)" : "") + " or delete the key");
      if (!kv.second.IsScalar()) fail(kat, key, std::string("expected ") + kind_name(spec->kind) + ", got a list or mapping");
      std::string why;
      auto v = parse_scalar(*spec, kv.second.Scalar(), why);
      if (!v) fail(kat, key, why);
      if (auto problem = check_value(*spec, *v); !problem.empty()) fail(kat, key, problem);
      cfg.values_[key] = *v;
    }
  }
  for (const auto& o : overrides) {
    auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0)
      throw UsageError("--set " + o + ": expected section.key=value, e.g. --set train.steps=100");
    cfg.set(o.substr(0, eq), o.substr(eq + 1), "--set " + o);
  }
  return cfg;
}

void Config::set(const std::string& key, const std::string& text, const std::string& source) {
  const auto* spec = schema_.find(key);
  if (key == "task") throw UsageError(source + ": the task comes from the config file and can't be overridden");
  if (!spec) throw UsageError(source + ": unknown key '" + key + "'" + suggestion(schema_, key, task_));
  // The text as written, less surrounding blanks; YAML reads it only when quoted (--set
  // data.root='"a b"'), and then only a whole quoted scalar, since YAML would drop a " #..." as a
  // comment, "&a " or "!t " as an anchor or tag, and what follows a closing quote, so that --set
  // data.root='/data/set #2' became /data/set.
  const auto first = text.find_first_not_of(" \t\r\n"), last = text.find_last_not_of(" \t\r\n");
  std::string scalar = first == std::string::npos ? "" : text.substr(first, last - first + 1);
  if (!scalar.empty() && (scalar.front() == '"' || scalar.front() == '\'')) {
    const char quote = scalar.front();
    size_t close = 1;  // where the quote closes
    while (close < scalar.size()) {
      if (quote == '"' && scalar[close] == '\\') close += 2;                // an escape: \" \\ \n ...
      else if (quote == '\'' && scalar.compare(close, 2, "''") == 0) close += 2;  // '' is one '
      else if (scalar[close] == quote) break;
      else ++close;
    }
    if (close != scalar.size() - 1)  // unclosed, or something after it
      throw UsageError(source + ": " + key + ": the value opens a quote (" + std::string(1, quote) +
                       ") but is not one quoted string; quote all of it, or none");
    try {
      scalar = YAML::Load(scalar).Scalar();
    } catch (const YAML::Exception& e) {  // a bad escape: "C:\q"
      throw UsageError(source + ": " + key + ": not a valid YAML quoted string (" + e.msg +
                       "); inside double quotes write \\\\ for \\, or use single quotes");
    }
  }
  std::string why;
  auto v = parse_scalar(*spec, scalar, why);
  if (!v) throw UsageError(source + ": " + key + ": " + why);
  if (auto problem = check_value(*spec, *v); !problem.empty()) throw UsageError(source + ": " + key + ": " + problem);
  values_[key] = *v;
}

const Value& Config::get(const std::string& key, Kind kind) const {
  const auto* spec = schema_.find(key);
  TORCH_CHECK(spec && spec->kind == kind, "zoo: config key ", key, " is not declared with that type (a bug)");
  return values_.at(key);
}
bool Config::get_bool(const std::string& key) const { return std::get<bool>(get(key, Kind::kBool)); }
int64_t Config::get_int(const std::string& key) const { return std::get<int64_t>(get(key, Kind::kInt)); }
double Config::get_float(const std::string& key) const { return std::get<double>(get(key, Kind::kFloat)); }
const std::string& Config::get_string(const std::string& key) const {
  return std::get<std::string>(get(key, Kind::kString));
}

std::string show_value(const Value& v) {
  if (auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (auto* d = std::get_if<double>(&v)) {
    // The fewest digits that read back as the same double: 0.1 shows as 0.1, 1.0000001 not as 1.
    std::ostringstream os;
    for (int digits = 6; digits <= 17; ++digits) {
      os.str("");
      os << std::setprecision(digits) << *d;
      if (std::strtod(os.str().c_str(), nullptr) == *d) break;
    }
    return os.str();
  }
  return std::get<std::string>(v);
}

std::string changed_fixed_key(const Config& now, const Config& trained) {
  for (const auto& spec : now.schema().keys())
    if (spec.fixed && trained.schema().find(spec.key) && now.value(spec.key) != trained.value(spec.key)) return spec.key;
  return {};
}

std::vector<std::string> changed_keys(const Config& now, const Config& trained) {
  std::vector<std::string> out;
  for (const auto& spec : now.schema().keys())
    if (trained.schema().find(spec.key) && now.value(spec.key) != trained.value(spec.key))
      out.push_back(spec.key + " " + show_value(trained.value(spec.key)) + " -> " + show_value(now.value(spec.key)));
  return out;
}

std::string Config::to_yaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "task" << YAML::Value << task_;
  std::vector<std::string> sections;  // in order of first appearance
  for (const auto& spec : schema_.keys()) {
    auto section = spec.key.substr(0, spec.key.find('.'));
    if (std::find(sections.begin(), sections.end(), section) == sections.end()) sections.push_back(section);
  }
  for (const auto& section : sections) {
    out << YAML::Key << section << YAML::Value << YAML::BeginMap;
    for (const auto& spec : schema_.keys()) {
      if (spec.key.rfind(section + ".", 0) != 0) continue;
      out << YAML::Key << spec.key.substr(section.size() + 1) << YAML::Value;
      const auto& v = values_.at(spec.key);
      if (auto* b = std::get_if<bool>(&v)) out << *b;
      else if (auto* i = std::get_if<int64_t>(&v)) out << *i;
      else if (auto* d = std::get_if<double>(&v)) out << YAML::Precision(17) << *d;
      else out << YAML::DoubleQuoted << std::get<std::string>(v);
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace zoo
