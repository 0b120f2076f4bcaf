// Config: every key checked; errors name the key, the file and the line.
#include "tests/catch.h"

#include <filesystem>
#include <fstream>

#include "helpers.h"
#include "train/config.h"

using zoo::Config;
using zoo::UsageError;
using Catch::Matchers::Contains;

namespace {

std::string write_config(const std::string& name, const std::string& text) {
  auto path = zoo::test::scratch("config") + "/" + name;
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST_CASE("every shipped config is valid and names a known task", "[config]") {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(zoo::test::source_dir() + "/configs")) {
    if (e.path().extension() != ".yaml") continue;
    INFO(e.path());
    auto cfg = Config::from_file(e.path().string());
    CHECK(e.path().stem().string().rfind(cfg.task().substr(0, cfg.task().find('_')), 0) == 0);
    ++n;
  }
  CHECK(n >= 9);
}

TEST_CASE("a UsageError's message is one line: control bytes escaped, a long one cut", "[config]") {
  CHECK(std::string(zoo::UsageError(std::string("a\0b\nc\x7f", 6)).what()) == "a\\x00b\\x0ac\\x7f");
  // A long one keeps its start and its end, which says what to do (a 20 MB token in a data file).
  CHECK(std::string(zoo::UsageError(std::string(5000, 'x') + "; run scripts/fetch-data").what()) ==
        std::string(1200, 'x') + " ... " + std::string(700 - 24, 'x') + "; run scripts/fetch-data");
  // ... cut between characters, not inside one's UTF-8 bytes.
  std::string accents;
  for (int i = 0; i < 3000; ++i) accents += "\xc3\xa9";
  std::string head = "a", tail;
  for (int i = 0; i < 599; ++i) head += "\xc3\xa9";  // byte 1,200 is inside the 600th: it is left out
  for (int i = 0; i < 350; ++i) tail += "\xc3\xa9";
  CHECK(std::string(zoo::UsageError("a" + accents).what()) == head + " ... " + tail);
  // ... and a message of megabytes (its middle left out before escaping): a token of 20,000
  // stray bytes shows as whole \xNN escapes, one " ... " between them.
  std::string escapes_head, escapes_tail;
  for (int i = 0; i < 299; ++i) escapes_head += "\\x80";  // 3 + 4 x 299 = 1,199 characters
  for (int i = 0; i < 173; ++i) escapes_tail += "\\x80";  // 4 x 173 + 6 = 698
  CHECK(std::string(zoo::UsageError("x: " + std::string(20000, '\x80') + "; do Y").what()) ==
        "x: " + escapes_head + " ... " + escapes_tail + "; do Y");
  CHECK(std::string(zoo::UsageError(std::string(20000, 'x') + "; run scripts/fetch-data").what()) ==
        std::string(1200, 'x') + " ... " + std::string(700 - 24, 'x') + "; run scripts/fetch-data");
  CHECK(std::string(zoo::UsageError("caf\xc3\xa9").what()) == "caf\xc3\xa9");  // UTF-8 stays
  // A byte that is not UTF-8 (a damaged file's, a stray Latin-1 one, a sequence cut short) is escaped.
  CHECK(std::string(zoo::UsageError("IDA\xff chunk").what()) == "IDA\\xff chunk");
  CHECK(std::string(zoo::UsageError("\x89PNG").what()) == "\\x89PNG");
  CHECK(std::string(zoo::UsageError("caf\xc3").what()) == "caf\\xc3");
  CHECK(std::string(zoo::UsageError("\xe2\x82\xac 5").what()) == "\xe2\x82\xac 5");  // the euro sign stays
  // C1 controls (a terminal's CSI), the line separator, an overlong form and a surrogate are escaped too.
  CHECK(std::string(zoo::UsageError("a\xc2\x9b" "2J").what()) == "a\\xc2\\x9b2J");
  CHECK(std::string(zoo::UsageError("a\xe2\x80\xa8" "b").what()) == "a\\xe2\\x80\\xa8b");
  CHECK(std::string(zoo::UsageError("\xc0\xaf").what()) == "\\xc0\\xaf");
  CHECK(std::string(zoo::UsageError("\xed\xa0\x80").what()) == "\\xed\\xa0\\x80");
}

TEST_CASE("shipped ViT config loads with its values", "[config]") {
  auto cfg = Config::from_file(zoo::test::source_dir() + "/configs/vit_fashion_mnist.yaml");
  CHECK(cfg.task() == "vit_fashion_mnist");
  CHECK(cfg.get_int("model.patch_size") == 4);
  CHECK(cfg.get_string("optim.name") == "adamw");
  CHECK(cfg.get_bool("train.ema"));
}

TEST_CASE("unknown key names the key, file and line, with a suggestion", "[config]") {
  auto path = write_config("bad.yaml", "task: vit_fashion_mnist\ntrain:\n  seed: 1\n  stepz: 10\n");
  CHECK_THROWS_WITH(Config::from_file(path),
                    Contains(path + ":4: train.stepz: unknown key") && Contains("did you mean train.steps?"));
}

TEST_CASE("wrong types and out-of-range values are rejected with the line", "[config]") {
  auto p1 = write_config("t1.yaml", "task: vit_fashion_mnist\ntrain:\n  steps: ten\n");
  CHECK_THROWS_WITH(Config::from_file(p1), Contains(p1 + ":3: train.steps: expected an integer, got 'ten'"));
  auto p2 = write_config("t2.yaml", "task: vit_fashion_mnist\noptim:\n  lr: -1\n");
  CHECK_THROWS_WITH(Config::from_file(p2), Contains(p2 + ":3: optim.lr: must be at least 0"));
  auto p3 = write_config("t3.yaml", "task: vit_fashion_mnist\ntrain:\n  ema: maybe\n");
  CHECK_THROWS_WITH(Config::from_file(p3), Contains("train.ema: expected true or false"));
  auto p4 = write_config("t4.yaml", "task: vit_fashion_mnist\noptim:\n  name: lion\n");
  CHECK_THROWS_WITH(Config::from_file(p4), Contains("optim.name: must be one of adamw adam sgd"));
  auto p5 = write_config("t5.yaml", "task: vit_fashion_mnist\ntrain:\n  steps: [1, 2]\n");
  CHECK_THROWS_WITH(Config::from_file(p5), Contains("train.steps: expected an integer, got a list"));
  auto p6 = write_config("t6.yaml", "task: vit_fashion_mnist\ntrain:\n  device: gpu\n");
  CHECK_THROWS_WITH(Config::from_file(p6), Contains("train.device: must be auto, cpu, cuda or cuda:N"));
  auto p7 = write_config("t7.yaml", "task: vit_fashion_mnist\ntrain:\n  threads: many\n");
  CHECK_THROWS_WITH(Config::from_file(p7), Contains("train.threads: must be 'auto' or a thread count"));
  // The value as given, to the digit that puts it out of range.
  auto p8 = write_config("t8.yaml", "task: ddpm_fashion_mnist\nsample:\n  eta: 1.0000001\n");
  CHECK_THROWS_WITH(Config::from_file(p8), Contains("sample.eta: must be at most 1, got 1.0000001"));
  // A device index fits c10::DeviceIndex (8 bits); one of 20 digits once ended in "failed: stoll".
  p6 = write_config("t9.yaml", "task: vit_fashion_mnist\n");
  CHECK_NOTHROW(Config::from_file(p6, {"train.device=cuda:127"}));
  for (const std::string index : {"128", "99999999999999999999"})
    CHECK_THROWS_WITH(Config::from_file(p6, {"train.device=cuda:" + index}),
                      Contains("train.device: must be auto, cpu, cuda or cuda:N (N from 0 to 127), got 'cuda:" + index + "'"));
  // Numbers read as written or not at all: no octal or hex, nothing float would hold as 0.
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"train:\n  log_every: 010\n", ":3: train.log_every: '010' has a leading zero, which YAML 1.1 and bash read as octal (010 is 8)"},
      {"train:\n  seed: 99999999999999999999\n", ":3: train.seed: '99999999999999999999' is out of range"},
      {"optim:\n  lr: 0x10\n", ":3: optim.lr: expected a number, got '0x10'"},
      {"optim:\n  lr: 1e-400\n", ":3: optim.lr: '1e-400' is too small to be told from 0"},
      {"optim:\n  lr: 00.5\n", ":3: optim.lr: '00.5' has a leading zero"},
      {"optim:\n  eps: 1e-50\n", ":3: optim.eps: must be above 0, and at least float's smallest normal 1.2e-38"},
      {"train:\n  threads: 010\n", ":3: train.threads: must be 'auto' or a thread count from 1 to 1024, got '010': "
                                    "'010' has a leading zero"},
      {"train:\n  device: cuda:00\n", ":3: train.device: must be auto, cpu, cuda or cuda:N"},
      {"optim:\n  lr: 1e39\n", ":3: optim.lr: '1e39' is out of range (at most 3.4e38 in magnitude)"}};
  for (const auto& [yaml, message] : refused) {
    auto p = write_config("number.yaml", "task: vit_fashion_mnist\n" + yaml);
    CHECK_THROWS_WITH(Config::from_file(p), Contains(p + message));
  }
  auto p10 = write_config("numbers.yaml", "task: vit_fashion_mnist\ntrain:\n  seed: 0\n  log_every: +10\noptim:\n  lr: .5\n  eps: 1.0e-9\n  weight_decay: 0\n");
  auto numbers = Config::from_file(p10);
  CHECK(numbers.get_int("train.log_every") == 10);
  CHECK(numbers.get_float("optim.lr") == 0.5);
  CHECK(numbers.get_float("optim.eps") == 1e-9);
  CHECK(zoo::split_commas("a,,b,") == std::vector<std::string>{"a", "", "b", ""});
  CHECK(zoo::split_commas("") == std::vector<std::string>{""});
  std::string why;
  CHECK(zoo::parse_whole("-12", why) == int64_t{-12});
  CHECK(zoo::parse_whole("9223372036854775807", why) == INT64_MAX);
  CHECK_FALSE(zoo::parse_whole("1.5", why));
  CHECK_FALSE(zoo::parse_whole(" 5", why));
  CHECK(why.empty());  // not a whole number: the caller says what it expected
  for (const std::string text : {"1.2e-38", "1e-40", "1.0000000000000001e-09", "-0", "1e+20", "0.5", "-0.25"}) {
    INFO(text);  // as show_value writes them into a checkpoint's config
    CHECK(zoo::parse_real(text, why) == std::strtod(text.c_str(), nullptr));
  }
  for (const std::string text : {"inf", "nan", "1e", "0x1p-3", "", "1 ", "010", "-01.5"}) {
    INFO(text);
    CHECK_FALSE(zoo::parse_real(text, why));
  }
}

TEST_CASE("missing file, unknown task, unknown section, bad YAML", "[config]") {
  CHECK_THROWS_WITH(Config::from_file("/nonexistent/x.yaml"), Contains("/nonexistent/x.yaml: cannot read"));
  auto p1 = write_config("task.yaml", "task: gpt5\n");
  CHECK_THROWS_WITH(Config::from_file(p1), Contains(p1 + ":1: task: unknown task 'gpt5'"));
  auto p2 = write_config("notask.yaml", "train: {steps: 3}\n");
  CHECK_THROWS_WITH(Config::from_file(p2), Contains("task: missing"));
  auto p3 = write_config("section.yaml", "task: vit_fashion_mnist\ntrian:\n  steps: 3\n");
  CHECK_THROWS_WITH(Config::from_file(p3), Contains(p3 + ":2: trian: unknown section"));
  auto p4 = write_config("yaml.yaml", "task: vit_fashion_mnist\ntrain: {steps: 3\n");
  CHECK_THROWS_WITH(Config::from_file(p4), Contains("not valid YAML"));
}

TEST_CASE("set overrides (--set) any key and is checked like the file", "[config]") {
  auto path = zoo::test::source_dir() + "/configs/vit_fashion_mnist.yaml";
  auto cfg = Config::from_file(path, {"train.steps=7", "optim.lr=0.5", "data.hflip=false", "train.device=cpu"});
  CHECK(cfg.get_int("train.steps") == 7);
  CHECK(cfg.get_float("optim.lr") == 0.5);
  CHECK_FALSE(cfg.get_bool("data.hflip"));
  CHECK_THROWS_WITH(Config::from_file(path, {"train.steps"}), Contains("expected section.key=value"));
  CHECK_THROWS_WITH(Config::from_file(path, {"train.stepz=3"}), Contains("unknown key 'train.stepz'"));
  CHECK_THROWS_WITH(Config::from_file(path, {"train.steps=-3"}), Contains("train.steps: must be at least 1"));
  CHECK_THROWS_WITH(Config::from_file(path, {"task=other"}), Contains("can't be overridden"));
  // A value is taken as written (less surrounding blanks), not as YAML, whose comments, anchors
  // and tags would cut it silently; quoted, YAML reads it.
  for (const std::string root : {"/data/set #2", "&a /data", "!t /data", "/data/a, b: c"})
    CHECK(Config::from_file(path, {"data.root=" + root}).get_string("data.root") == root);
  CHECK(Config::from_file(path, {"data.root= /data/x\t"}).get_string("data.root") == "/data/x");
  CHECK(Config::from_file(path, {"data.root=\"/data/a #1\""}).get_string("data.root") == "/data/a #1");
  CHECK(Config::from_file(path, {"data.root='/data/it''s'"}).get_string("data.root") == "/data/it's");
  CHECK(Config::from_file(path, {"train.steps= 12 "}).get_int("train.steps") == 12);
  // Quoted, it is one quoted string or refused: YAML kept what came before anything after it.
  CHECK(Config::from_file(path, {"data.root=\"/data/\\\"q\\\"\""}).get_string("data.root") == "/data/\"q\"");
  CHECK(Config::from_file(path, {"train.steps=12\r"}).get_int("train.steps") == 12);  // a CRLF script's line
  CHECK_THROWS_WITH(Config::from_file(path, {"data.root=\"C:\\q\""}),
                    Contains("--set data.root=\"C:\\q\": data.root: not a valid YAML quoted string (") &&
                        Contains("inside double quotes write \\\\ for \\, or use single quotes"));
  for (const std::string text : {"\"5\" 7", "'5' 7", "\"5\" # 7", "\"/x", "'/x' '/y'", "\""})
    CHECK_THROWS_WITH(Config::from_file(path, {"train.steps=" + text}),
                      Contains("--set train.steps=" + text + ": train.steps: the value opens a quote") &&
                          Contains("but is not one quoted string; quote all of it, or none"));
}

TEST_CASE("the resolved config round-trips through YAML", "[config]") {
  auto path = zoo::test::source_dir() + "/configs/vit_fashion_mnist.yaml";
  auto a = Config::from_file(path, {"optim.lr=0.00123", "data.root=/some where/x"});
  auto b = Config::from_yaml(a.to_yaml(), "resolved");
  CHECK(a.to_yaml() == b.to_yaml());
  CHECK(b.get_float("optim.lr") == 0.00123);
  CHECK(b.get_string("data.root") == "/some where/x");
}
