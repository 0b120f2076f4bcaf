// Typed, validated configuration: YAML file -> Config. Every key is declared in a
// Schema (type, default, range, help); anything else is an error that names the
// key, the file and the line.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "models/common/utf8.h"

namespace zoo {

/// Bad usage or input (config, CLI argument, data file, checkpoint): exit code 2. The message is
/// one line: control characters (a NUL, a line break) and bytes that are not UTF-8, from a damaged
/// file, show as \xNN, and a message over 2,000 characters keeps its first 1,200 and its last 700
/// (where a message says what to do) around " ... ".
struct UsageError : std::runtime_error {
  explicit UsageError(const std::string& what) : std::runtime_error(one_line(what)) {}

  static std::string one_line(const std::string& s) {
    constexpr size_t kMost = 2000, kHead = 1200, kTail = 700;
    // The message as pieces, one per character or escaped byte, so that a cut never splits one.
    // Each byte escapes to at most 4 characters: a long message's middle is left out first.
    const bool long_input = s.size() > 4 * kMost;
    const auto head = pieces(s, 0, long_input ? back_to_start(s, kHead) : s.size());
    const auto tail = long_input ? pieces(s, back_to_start(s, s.size() - kTail), s.size()) : head;
    std::string out;
    if (!long_input) {
      for (const auto& p : head) out += p;
      if (out.size() <= kMost) return out;
      out.clear();
    }
    for (size_t i = 0; i < head.size() && out.size() + head[i].size() <= kHead; ++i) out += head[i];
    std::string end;
    for (size_t i = tail.size(); i > 0 && end.size() + tail[i - 1].size() <= kTail; --i) end.insert(0, tail[i - 1]);
    return out + " ... " + end;
  }

 private:
  /// `at`, moved back to the first byte of the UTF-8 sequence it falls in (at most 3 bytes back).
  static size_t back_to_start(const std::string& s, size_t at) {
    for (int k = 0; k < 3 && at > 0 && at < s.size() && (static_cast<unsigned char>(s[at]) & 0xC0) == 0x80; ++k) --at;
    return at;
  }

  /// s[from, to) as printable pieces: a well-formed UTF-8 sequence is kept (zoo::utf8::sequence),
  /// but for the C0 and C1 controls, DEL and the line and paragraph separators; a stray byte (a
  /// damaged file's) becomes \xNN.
  static std::vector<std::string> pieces(const std::string& s, size_t from, size_t to) {
    static const char* hex = "0123456789abcdef";
    std::vector<std::string> out;
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    for (size_t i = from; i < to;) {
      const unsigned char c = p[i];
      char32_t cp = 0;
      size_t len = utf8::sequence(p + i, to - i, cp);
      if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0) || cp == 0x2028 || cp == 0x2029) len = 0;
      if (len) {
        out.emplace_back(s, i, len);
        i += len;
      } else {
        out.push_back({'\\', 'x', hex[c >> 4], hex[c & 15]});
        ++i;
      }
    }
    return out;
  }
};

using Value = std::variant<bool, int64_t, double, std::string>;
enum class Kind { kBool, kInt, kFloat, kString };

struct KeySpec {
  std::string key;  // "section.name"
  Kind kind = Kind::kString;
  Value default_value;
  std::string help;
  std::optional<double> min, max;           // numeric bounds, inclusive
  std::vector<std::string> choices;         // allowed strings
  std::function<std::string(const Value&)> check;  // extra check: empty string = fine
  /// The key shapes what a checkpoint holds (a width, the label set, the noise schedule): when
  /// loading one, --set may not change it. Every model.* and diffusion.* key but dropouts is;
  /// Schema::fixed marks others.
  bool fixed = false;
};

class Schema {
 public:
  Schema& add_bool(const std::string& key, bool def, std::string help);
  Schema& add_int(const std::string& key, int64_t def, std::string help,
                  std::optional<double> min = std::nullopt, std::optional<double> max = std::nullopt);
  Schema& add_float(const std::string& key, double def, std::string help,
                    std::optional<double> min = std::nullopt, std::optional<double> max = std::nullopt);
  Schema& add_string(const std::string& key, std::string def, std::string help,
                     std::vector<std::string> choices = {},
                     std::function<std::string(const Value&)> check = nullptr);
  /// Marks `key`, declared already, as fixed by a checkpoint (see KeySpec::fixed).
  Schema& fixed(const std::string& key);
  /// Adds a check to `key`, declared already (see KeySpec::check).
  Schema& check(const std::string& key, std::function<std::string(const Value&)> fn);
  const KeySpec* find(const std::string& key) const;
  const std::vector<KeySpec>& keys() const { return keys_; }

 private:
  std::vector<KeySpec> keys_;
};

class Config {
 public:
  /// Reads `path`, picks the task named by its `task:` key, validates every key
  /// against that task's schema, then applies `overrides` ("section.key=value").
  static Config from_file(const std::string& path, const std::vector<std::string>& overrides = {});
  /// The same from YAML text (`origin` names it in messages, e.g. a checkpoint path).
  static Config from_yaml(const std::string& yaml, const std::string& origin,
                          const std::vector<std::string>& overrides = {});

  const std::string& task() const { return task_; }
  bool get_bool(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  /// The value of a declared key, whatever its kind.
  const Value& value(const std::string& key) const { return values_.at(key); }
  /// Sets a key from text as --set does ("--set" names the source in messages).
  void set(const std::string& key, const std::string& text, const std::string& source = "--set");

  /// Every key, resolved, as YAML grouped by section: reloading it gives the same Config.
  std::string to_yaml() const;
  const Schema& schema() const { return schema_; }

 private:
  const Value& get(const std::string& key, Kind kind) const;
  std::string task_;
  Schema schema_;
  std::map<std::string, Value> values_;
};

/// `text` as a whole number in decimal ("12", "-3", "+5"); nullopt otherwise, with `why` set when
/// it reads as one but may not be taken: a leading zero ("010", octal 8 to YAML 1.1 and to bash)
/// or a value outside int64. The configs' and the command line's whole numbers.
std::optional<int64_t> parse_whole(const std::string& text, std::string& why);

/// `text` as a real number that float holds (the networks compute in float): decimal, with an
/// exponent or not ("0.001", ".5", "1e-3"); nullopt otherwise, with `why` set when it reads as one
/// but may not be taken: beyond float's range, or not 0 and below its smallest normal (1.2e-38),
/// where it would be 0 or lose its digits. Hexadecimal, inf and nan are refused.
std::optional<double> parse_real(const std::string& text, std::string& why);

/// The comma-separated items of `text`, empty ones kept ("a,,b," gives a, "", b, ""), for the
/// lists given as one value (model.channel_mults, --labels, --between) to refuse them.
std::vector<std::string> split_commas(const std::string& text);

/// A value as a person would write it after --set: true, 64, 0.001, universal.
std::string show_value(const Value& v);

/// The first fixed key (KeySpec::fixed) whose value in `now` differs from `trained`, the
/// config a checkpoint was trained with; empty when none does.
std::string changed_fixed_key(const Config& now, const Config& trained);

/// Every key of `now` whose value differs from `trained` (a key `trained` has), as
/// "section.key OLD -> NOW", in schema order: what a resumed run changes of its stored config.
std::vector<std::string> changed_keys(const Config& now, const Config& trained);

/// The keys every task has: train.* (device, threads, seed, steps, ...) and optim.*.
void add_common_keys(Schema& schema);

}  // namespace zoo
