// The zoo command run as a process: exit codes and one-line messages on bad input,
// and a training run killed with SIGKILL that resumes and finishes.
#include "tests/catch.h"
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "helpers.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/tasks/task.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using zoo::test::run;
using zoo::test::check_refused;
using zoo::test::last_line;
using zoo::test::zoo_bin;
using zoo::test::q;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

std::string tiny_config(const std::string& dir, int steps) {
  auto path = dir + "/tiny.yaml";
  std::ofstream(path) << zoo::test::tiny_vit_yaml(steps);
  return path;
}


/// Starts `zoo train` in the background, waits for its first step checkpoint (or, `on_log`, its
/// first logged training step; up to 5 minutes on a loaded machine, and no longer than the process
/// lives), sends `signal`, and returns "code=<exit code>" followed by the run's log.
zoo::test::Run train_then_signal(const std::string& cfg, const std::string& run_dir, const std::string& signal,
                                 bool on_log = false) {
  const auto log = run_dir + ".log";
  const auto ready = on_log ? "grep -q '\"step\"' " + q(run_dir + "/metrics.jsonl")
                            : "ls " + q(run_dir) + "/checkpoints/step-*.pt";
  return run("(" + zoo_bin() + " train --config " + q(cfg) + " --run-dir " + q(run_dir) + " > " + q(log) +
             " 2>&1 & pid=$!; for i in $(seq 6000); do " + ready + " >/dev/null 2>&1 && break; kill -0 $pid || break; "
             "sleep 0.05; done; "
             "sleep 0.2; kill -" + signal + " $pid; wait $pid; echo code=$?; cat " + q(log) + ")");
}

}  // namespace

TEST_CASE("zoo usage: help, unknown command, missing and unknown options", "[cli]") {
  CHECK(run(zoo_bin()).code == 2);
  auto help = run(zoo_bin() + " --help");
  CHECK(help.code == 0);
  CHECK_THAT(help.output, Contains("train") && Contains("eval") && Contains("list"));
  CHECK(run(zoo_bin() + " train --help").code == 0);
  CHECK(run(zoo_bin() + " eval --help").code == 0);
  for (const char* args : {" --help", " sample --help"}) {  // help that can't be written is a failure too
    auto full = run("{ " + zoo_bin() + args + " > /dev/full; }");
    CHECK(full.code == 1);
    CHECK_THAT(full.output, Contains("could not write to standard output"));
  }
  auto unknown = run(zoo_bin() + " frobnicate");
  CHECK(unknown.code == 2);
  CHECK_THAT(unknown.output, Contains("unknown command 'frobnicate'"));
  auto noconfig = run(zoo_bin() + " train");
  CHECK(noconfig.code == 2);
  CHECK_THAT(noconfig.output, Contains("--config is required"));
  auto badflag = run(zoo_bin() + " train --config x.yaml --bogus");
  CHECK(badflag.code == 2);
  CHECK_THAT(badflag.output, Contains("bogus"));
  auto badvalue = run(zoo_bin() + " fill-mask --checkpoint x.pt --top abc \"a [MASK]\"");  // the option is named
  CHECK(badvalue.code == 2);
  CHECK_THAT(badvalue.output, Contains("--top abc: not a valid value"));
  auto badn = run(zoo_bin() + " sample vae --n abc");  // named as typed, though cxxopts parses it as -n
  CHECK(badn.code == 2);
  CHECK_THAT(badn.output, Contains("--n abc: not a valid value"));
  // Numbers are read from the text as typed, as the configs' are: cxxopts alone wrapped some past
  // int64 round (this seed to 2049638230412172404), took "0.5abc" as 0.5, and 010 or 0x10 as it liked.
  check_refused("sample vae --seed 20496382304121724020", "--seed 20496382304121724020: '20496382304121724020' is out of range");
  check_refused("sample vae --n 010", "--n 010: '010' has a leading zero");
  check_refused("sample ddim --eta 0.5abc", "--eta 0.5abc: sample.eta: expected a number, got '0.5abc'");
  check_refused("sample ddim --eta 0,5", "--eta 0,5: sample.eta: expected a number, got '0,5'");
  check_refused("sample ddim --steps 010", "--steps 010: sample.steps: '010' has a leading zero");
  check_refused("fill-mask --checkpoint x.pt --top 0x10 'a [MASK]'", "--top 0x10: expected a whole number, in decimal");
  check_refused("zero-shot --checkpoint x.pt --image x.png --labels 'bag,,coat'", "--labels: label 2 is empty");
  check_refused("zero-shot --checkpoint x.pt --image x.png --labels 'bag,coat,'", "--labels: label 3 is empty");
  check_refused("sample ddim --interpolate 3 --between a.png,b.png,", "--between: expected two image files, A.png,B.png; got 3");
  check_refused("train --config " + q(zoo::test::source_dir() + "/configs/ddpm_fashion_mnist.yaml") +
                    " --set model.channel_mults=1,2, --run-dir " + q(zoo::test::scratch("cli-mults") + "/r"),
                "model.channel_mults: expected comma-separated positive integers, got '1,2,'");
  // ZOO_KEEP_FREED_MEMORY is 0 or 1: "off" left it on, unsaid.
  auto env = run("ZOO_KEEP_FREED_MEMORY=off " + zoo_bin() + " train --config " +
                 q(zoo::test::source_dir() + "/configs/vit_fashion_mnist.yaml") +
                 " --set train.steps=1 --set data.root=/nonexistent --run-dir " + q(zoo::test::scratch("cli-env") + "/r"));
  CHECK(env.code == 2);
  CHECK_THAT(last_line(env.output), Contains("zoo: error: ZOO_KEEP_FREED_MEMORY=off: expected 0 (off) or 1 (on, as when unset)"));
  auto list = run("cd " + q(zoo::test::source_dir()) + " && " + zoo_bin() + " list");
  CHECK(list.code == 0);
  CHECK_THAT(list.output, Contains("vit_fashion_mnist") && Contains("configs/vit_fashion_mnist.yaml"));
  // A task's keys: every one, with its default, range and meaning; an unknown key points there.
  auto keys = run(zoo_bin() + " list vit_fashion_mnist");
  CHECK(keys.code == 0);
  CHECK_THAT(keys.output, Contains("model.patch_size") && Contains("4; 1..28") && Contains("patch side in pixels") &&
                              Contains("train.steps") && Contains("optim.lr"));
  CHECK_THAT(keys.output, !Contains("vocab_size"));  // BERT's, not the ViT's
  REQUIRE(zoo::task_registry().size() == 9);  // the tasks README's Configs lists
  for (const auto& task : zoo::task_registry()) {
    INFO(task.name);
    auto r = run(zoo_bin() + " list " + task.name);
    CHECK(r.code == 0);
    CHECK_THAT(r.output, Contains(task.name + ": ") && Contains("  train.steps ") && Contains("      "));
  }
  auto no_task = run(zoo_bin() + " list nope");
  CHECK(no_task.code == 2);
  CHECK_THAT(no_task.output, Contains("unknown task 'nope' (known: vit_fashion_mnist"));
  auto far = run("cd " + q(zoo::test::source_dir()) + " && " + zoo_bin() +
                 " train --config configs/vit_fashion_mnist.yaml --set foo.bar=1");
  CHECK(far.code == 2);
  CHECK_THAT(far.output, Contains("--set foo.bar=1: unknown key 'foo.bar' (`zoo list vit_fashion_mnist` lists the task's keys)"));
}

TEST_CASE("zoo train: bad configs exit 2 with a one-line message", "[cli]") {
  auto dir = zoo::test::scratch("cli-config");
  check_refused("train --config " + q(dir + "/missing.yaml"), dir + "/missing.yaml: cannot read");
  check_refused("train --config " + q(zoo::test::source_dir() + "/configs/bert_mlm.yaml") +
                    " --set data.max_length=136 --run-dir " + q(dir + "/bert"),
                "data.short_length: 16 must divide data.max_length (136) when data.short_steps is above 0");

  auto bad = dir + "/bad.yaml";
  std::ofstream(bad) << "task: vit_fashion_mnist\ntrain:\n  steps: 3\n  batch_sise: 4\n";
  auto r = run(zoo_bin() + " train --config " + q(bad));
  CHECK(r.code == 2);
  CHECK_THAT(r.output, StartsWith("zoo: error: " + bad + ":4: train.batch_sise: unknown key"));
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);

  auto cfg = tiny_config(dir, 3);
  check_refused("train --config " + q(cfg) + " --set train.steps=abc", "--set train.steps=abc: train.steps: expected an integer");
  check_refused("train --config " + q(cfg) + " --set nodot", "--set nodot: expected section.key=value");
  const auto train = "train --config " + q(cfg) + " --run-dir " + q(dir + "/r") + " ";
  check_refused(train + "--set data.root=/none,x",  // a value with a comma stays whole
                "data.root: /none,x/train-images-idx3-ubyte is missing");
  auto twice = dir + "/twice.yaml";
  std::ofstream(twice) << "task: vit_fashion_mnist\nmodel:\n  dim: 64\n  dim: 32\n";
  check_refused("train --config " + q(twice), twice + ":4: model.dim: given twice (also on line 3)");
  auto two_docs = dir + "/two_docs.yaml";  // yaml-cpp's Load would keep the first and drop the second
  std::ofstream(two_docs) << "task: vit_fashion_mnist\n---\ntrain:\n  steps: 3\n";
  check_refused("train --config " + q(two_docs), two_docs + ":3: a second YAML document");
  check_refused(train + "--config " + q(twice), "--config given twice; keep one");  // cxxopts would keep the last
  check_refused("train --config ''", "--config: empty; give a value");  // not ": cannot read the config file"
  check_refused("eval --checkpoint ''", "--checkpoint: empty; give a value");
  check_refused("sample ddim --checkpoint ''", "--checkpoint: empty; give a value");
  check_refused("sample ''", "unknown model ''");  // an empty positional: the command's own message
  check_refused(train + "--set optim.min_lr=0.01", "optim.min_lr: 0.01 is above optim.lr (0.003)");
  check_refused(train + "--set model.mlp_dim=1000000000000", "model.mlp_dim: must be at most 65536");
  // A model within the keys' ranges that the allocator refuses (here capped at 8 GB of address
  // space; a 16384-map DCGAN asks for more in one tensor) is too big, named by its sizes.
  auto big = run("ulimit -v 8000000 && " + zoo_bin() + " train --config " +
                 q(zoo::test::source_dir() + "/configs/gan_fashion_mnist.yaml") +
                 " --set train.device=cpu --set model.generator_features=16384 --set data.root=" +
                 q(zoo::test::data_root()) + " --run-dir " + q(dir + "/big"));
  CHECK(big.code == 2);
  CHECK_THAT(last_line(big.output), Contains("zoo: error: the gan_fashion_mnist model does not fit in cpu memory") &&
                                        Contains("model.generator_features=16384") && Contains("make it smaller"));
  check_refused(train + "--set train.batch_size=100000",
                "train.batch_size: 100000 x 1 ranks is more than the 2000 training examples");
  // A truncated IDX file is named, with its size and the size its header gives.
  fs::create_directories(dir + "/short");
  REQUIRE(run("head -c 100000 " + q(zoo::test::data_root() + "/train-images-idx3-ubyte") + " > " +
              q(dir + "/short/train-images-idx3-ubyte") + " && cp " +
              q(zoo::test::data_root() + "/train-labels-idx1-ubyte") + " " + q(dir + "/short/"))
              .code == 0);
  check_refused(train + "--set data.root=" + q(dir + "/short"),
                dir + "/short/train-images-idx3-ubyte is 100000 bytes but its header says 47040016");
  check_refused(train + "--set data.root=/nonexistent",
                "data.root: /nonexistent/train-images-idx3-ubyte is missing; run scripts/fetch-data");
  check_refused(train + "--set train.device=cuda:7", "train.device: cuda:7 requested but this LibTorch sees");
  check_refused("train --config " + q(cfg) + " --resume --run-dir " + q(dir + "/none"),
                "--run-dir " + dir + "/none: no such run directory to resume");
  check_refused(train + "--set train.restarts=0", "--set train.restarts=0: train.restarts: must be at least 1, got 0");
  // Data and pretrained checkpoints the text tasks need, missing.
  const auto configs = zoo::test::source_dir() + "/configs/";
  check_refused("train --config " + q(configs + "gan_fashion_mnist.yaml") + " --set train.restarts=2 --set data.root=" +
                    q(zoo::test::data_root()) + " --run-dir " + q(dir + "/r"),
                "train.restarts: task gan_fashion_mnist has no validation metric");
  auto pre = run(zoo_bin() + " train --config " + q(configs + "bert_pos.yaml") + " --set model.pretrained=" +
                 q(dir + "/none.pt") + " --run-dir " + q(dir + "/r"));
  CHECK(pre.code == 2);
  CHECK_THAT(last_line(pre.output), Contains("zoo: error: model.pretrained: " + dir + "/none.pt: no such checkpoint") &&
                                        Contains("pretrain one with `zoo train --config configs/bert_mlm.yaml`"));
  CHECK(!fs::exists(dir + "/r"));
  check_refused("train --config " + q(configs + "transformer_g2p.yaml") + " --set data.root=" + q(dir) + " --run-dir " +
                    q(dir + "/r"),
                "data/dict.txt is missing; run scripts/fetch-data cmudict");
  check_refused("train --config " + q(configs + "bert_mlm.yaml") + " --set data.vocab=" + q(dir + "/vocab.txt") +
                    " --run-dir " + q(dir + "/r"),
                "data.vocab: " + dir + "/vocab.txt: cannot read");
  // Files that are not files: read to the end they would never end, or hang.
  check_refused("train --config /dev/zero", "/dev/zero: is not a regular file (a device or a pipe)");
  check_refused("train --config " + q(configs + "bert_mlm.yaml") + " --set data.vocab=/dev/zero --run-dir " + q(dir + "/r"),
                "data.vocab: /dev/zero: is not a regular file");
  check_refused(train + "--set optim.beta2=1", "optim.beta2: must be below 1 (Adam divides by 1 - beta^t)");
  check_refused(train + "--set optim.eps=0", "optim.eps: must be above 0");
  check_refused("train --config " + q(configs + "ddpm_fashion_mnist.yaml") + " --set eval.fid_samples=1",
                "eval.fid_samples: must be 0 (no FID) or at least 2");
  check_refused("train --config " + q(configs + "ddpm_fashion_mnist.yaml") + " --set sample.grid=5000",
                "sample.grid: must be at most 4096");
  // `zoo train` of a shipped config on the test data with `sets`, into run folder `name`.
  auto on_data = [&](const std::string& config, const std::string& sets, const std::string& name) {
    return "train --config " + q(configs + config) + " --set data.root=" + q(zoo::test::data_root()) + " " + sets +
           " --run-dir " + q(dir + "/" + name);
  };
  // Values a numerics review found to give NaN: an alpha-bar_T below float's smallest normal, FID's
  // covariance of one image, a linear probe standardised over one image.
  check_refused(on_data("ddpm_fashion_mnist.yaml", "--set diffusion.timesteps=20000", "long"),
                "diffusion.timesteps: alpha-bar at t = T is 1.32e-88 over 20000 steps of this schedule, below float's "
                "smallest normal (1.2e-38)");
  check_refused(on_data("ddpm_fashion_mnist.yaml", "--set data.val_size=1 --set eval.fid_classifier=" + q(dir + "/none.pt"), "one"),
                "data.val_size: 1 image is too few for FID on the val split");
  check_refused(on_data("clip_fashion_mnist.yaml", "--set eval.probe_train_limit=1", "probe"),
                "eval.probe_train_limit: the linear probe would be fitted on 1 training image (with data.val_size 5000); "
                "it needs 2 or more, or eval.linear_probe=false");
  check_refused(on_data("clip_fashion_mnist.yaml", "--set data.val_size=59999", "probe"),
                "the linear probe would be fitted on 1 training image (with data.val_size 59999)");
  // A file an eval key names is checked before the first step, not at the first evaluation.
  check_refused(on_data("ddpm_fashion_mnist.yaml", "--set eval.fid_classifier=" + q(dir + "/none.pt"), "fid"),
                "eval.fid_classifier: " + dir + "/none.pt: no such checkpoint file");
  CHECK(!fs::exists(dir + "/fid"));
  check_refused(on_data("ddpm_fashion_mnist.yaml", "--set model.base_channels=12", "r"),
                "model.base_channels: 12 is not a multiple of 8 (GroupNorm's 8 groups)");
  check_refused(train + "--set train.seed=9223372036854775807 --set train.restarts=2",
                "train.seed: 9223372036854775807 + train.restarts - 1 overflows");
  // What a run writes, with a folder in its way: named before any training.
  fs::create_directories(dir + "/inway/metrics.jsonl");
  check_refused("train --config " + q(cfg) + " --run-dir " + q(dir + "/inway"),
                dir + "/inway/metrics.jsonl: is not a file (a folder?) and the run writes its metrics.jsonl there");
}

TEST_CASE("zoo eval: bad checkpoints exit 2 naming the file", "[cli]") {
  auto dir = zoo::test::scratch("cli-ckpt");
  auto r1 = run(zoo_bin() + " eval --checkpoint " + q(dir + "/nope.pt"));
  CHECK(r1.code == 2);
  CHECK_THAT(r1.output, Contains(dir + "/nope.pt: no such checkpoint"));
  std::ofstream(dir + "/junk.pt") << "not a checkpoint";
  auto r2 = run(zoo_bin() + " eval --checkpoint " + q(dir + "/junk.pt"));
  CHECK(r2.code == 2);
  CHECK_THAT(r2.output, Contains(dir + "/junk.pt: not a readable checkpoint"));
  CHECK_THAT(r2.output, !Contains("Exception raised from"));  // no c10::Error dump
  auto r3 = run(zoo_bin() + " eval");
  CHECK(r3.code == 2);
  CHECK_THAT(r3.output, Contains("--checkpoint is required"));
  auto r4 = run(zoo_bin() + " eval --checkpoint " + q(dir));
  CHECK(r4.code == 2);
  CHECK_THAT(r4.output, Contains(dir + ": is a directory; give a checkpoint file in it"));
  auto r5 = run(zoo_bin() + " eval --checkpoint /dev/null");
  CHECK(r5.code == 2);
  CHECK_THAT(r5.output, Contains("/dev/null: is not a regular file (a pipe or device); give a checkpoint file"));
}

TEST_CASE("a run's checkpoints and config are never replaced by mistake, and a diverged run saves nothing",
          "[cli][resume]") {
  auto dir = zoo::test::scratch("cli-keep");
  auto cfg = tiny_config(dir, 4);
  const auto rd = dir + "/run";
  REQUIRE(run(zoo_bin() + " train --config " + q(cfg) + " --run-dir " + q(rd)).code == 0);
  auto bytes = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const auto best = rd + "/checkpoints/best.pt", config = rd + "/config.yaml";
  const auto best_before = bytes(best), config_before = bytes(config);
  REQUIRE(!best_before.empty());
  auto again = run(zoo_bin() + " train --config " + q(cfg) + " --run-dir " + q(rd));  // without --resume
  CHECK(again.code == 2);
  CHECK_THAT(again.output,
             Contains("--run-dir " + rd + ": already holds a run's checkpoints; continue it with --resume"));
  auto off = run(zoo_bin() + " train --config " + q(cfg) + " --run-dir " + q(rd) + " --resume=false");  // a flag's value is read
  CHECK(off.code == 2);
  CHECK_THAT(off.output, Contains("already holds a run's checkpoints; continue it with --resume"));
  // A resume or an evaluation that changes what the weights are for is refused, even where the
  // tensors' shapes would still fit (2 heads of 16 and 1 head of 32 hold the same matrices).
  auto refused = run(zoo_bin() + " train --config " + q(cfg) + " --set model.heads=1 --run-dir " + q(rd) + " --resume");
  CHECK(refused.code == 2);  // a refused resume leaves config.yaml as it was
  CHECK_THAT(last_line(refused.output), Contains("--resume: model.heads is 1 but " + rd + "/checkpoints/step-00000004.pt "
                                                 "was trained with 2; put it back, or start a new run"));
  check_refused("eval --checkpoint " + q(best) + " --set model.heads=1",
                "--set model.heads=1: " + best + " was trained with model.heads=2 and its weights are for that; drop the --set");
  auto dropout = run(zoo_bin() + " eval --checkpoint " + q(best) + " --set model.dropout=0.3 --set data.eval_limit=50");
  CHECK(dropout.code == 0);  // dropout is off in evaluation: not a key the weights depend on
  auto onto = run(zoo_bin() + " eval --checkpoint " + q(best) + " --predictions " + q(best));
  CHECK(onto.code == 2);
  CHECK_THAT(onto.output, Contains("--predictions " + best + ": would overwrite a checkpoint"));
  // A checkpoint by content, whatever its name, and through a link.
  fs::copy_file(best, dir + "/copy.ckpt");
  fs::create_symlink(best, dir + "/link.txt");
  check_refused("eval --checkpoint " + q(best) + " --predictions " + q(dir + "/link.txt"),
                "--predictions " + dir + "/link.txt: would overwrite a checkpoint");
  check_refused("average " + q(rd + "/checkpoints/step-00000004.pt") + " " + q(best) + " --out " + q(dir + "/copy.ckpt"),
                "--out " + dir + "/copy.ckpt: would overwrite a checkpoint");
  check_refused("average " + q(rd + "/checkpoints/step-00000004.pt") + " " + q(best) + " --out " +
                    q(rd + "/checkpoints/step-00000005.pt"),
                "step-00000005.pt is a name the trainer gives its own checkpoints");
  // A one-run directory resumed as restarts (which would replace its best.pt), or past its end.
  check_refused("train --config " + q(cfg) + " --set train.restarts=2 --run-dir " + q(rd) + " --resume",
                "--resume: " + rd + " holds one run (train.restarts 1), not restarts");
  check_refused("train --config " + q(cfg) + " --set train.steps=2 --run-dir " + q(rd) + " --resume",
                "--resume: the run is at step 4, past train.steps=2; give a train.steps of at least 4");
  // Another task's config, and a second trainer on a directory in use (it holds run_dir/.lock).
  check_refused("train --config " + q(zoo::test::source_dir() + "/configs/vae_fashion_mnist.yaml") + " --set data.root=" +
                    q(zoo::test::data_root()) + " --run-dir " + q(rd) + " --resume",
                "--resume: " + rd + "/checkpoints/step-00000004.pt holds a vit_fashion_mnist run, not vae_fashion_mnist");
  {
    const int fd = ::open((rd + "/.lock").c_str(), O_RDWR | O_CREAT, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    check_refused("train --config " + q(cfg) + " --set train.steps=6 --run-dir " + q(rd) + " --resume",
                  "--run-dir " + rd + ": another zoo train is using it");
    ::close(fd);
  }
  // A run that fails before its first step leaves no directory behind, refused by the data or by the task
  // once the run's config.yaml is written.
  check_refused("train --config " + q(cfg) + " --set data.val_size=0 --run-dir " + q(dir + "/noval"),
                "data.val_size: is 0, so there is no val split");
  CHECK(!fs::exists(dir + "/noval"));
  check_refused("train --config " + q(cfg) + " --set train.batch_size=65 --set data.train_limit=64 --run-dir " +
                    q(dir + "/big"),
                "train.batch_size: 65 x 1 ranks is more than the 64 training examples");
  CHECK(!fs::exists(dir + "/big"));
  // --resume given a run's checkpoints/ folder: refused, and nothing is written there.
  const auto entries = [](const std::string& d) {
    return std::distance(fs::directory_iterator(d), fs::directory_iterator{});
  };
  const auto in_checkpoints = entries(rd + "/checkpoints");
  check_refused("train --config " + q(cfg) + " --run-dir " + q(rd + "/checkpoints") + " --resume",
                "--resume found no checkpoints/step-*.pt; that is a run's checkpoints/ folder; pass the run itself: "
                "--run-dir " + rd);
  CHECK(entries(rd + "/checkpoints") == in_checkpoints);
  CHECK(bytes(best) == best_before);
  CHECK(bytes(config) == config_before);
  // A resume may change other keys (train.steps, to go on), and says which.
  auto longer = run(zoo_bin() + " train --config " + q(cfg) + " --set train.steps=6 --run-dir " + q(rd) + " --resume");
  CHECK(longer.code == 0);
  CHECK_THAT(longer.output,
             Contains("--resume: the run goes on with 1 key(s) changed from its stored config: train.steps 4 -> 6"));
  // One flipped byte inside a tensor's record: torch's reader would load it; the zip CRC-32 does not match.
  // The byte is the middle of the largest record, found through the zip's central directory (the
  // file's middle byte can fall in a header or alignment padding, where the layout shifts with
  // the length of the values stored before it).
  auto flipped = best_before;
  const auto le = [&](size_t at, int width) {
    uint64_t v = 0;
    for (int i = width - 1; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(flipped.at(at + i));
    return static_cast<size_t>(v);
  };
  const size_t end = flipped.rfind(std::string("PK\5\6", 4));  // end of central directory
  REQUIRE(end != std::string::npos);
  size_t target = 0, largest = 0;
  for (size_t at = le(end + 16, 4), n = le(end + 10, 2); n > 0 && le(at, 4) == 0x02014b50; --n) {
    const size_t size = le(at + 20, 4), local = le(at + 42, 4);
    if (le(at + 28, 2) > 13 && flipped.compare(at + 46, 13, "archive/data/") == 0 && size > largest)
      largest = size, target = local + 30 + le(local + 26, 2) + le(local + 28, 2) + size / 2;
    at += 46 + le(at + 28, 2) + le(at + 30, 2) + le(at + 32, 2);
  }
  REQUIRE(largest > 0);
  flipped.at(target) = static_cast<char>(flipped.at(target) ^ 0x10);
  std::ofstream(dir + "/flipped.pt", std::ios::binary) << flipped;
  auto rot = run(zoo_bin() + " eval --checkpoint " + q(dir + "/flipped.pt"));
  CHECK(rot.code == 2);
  CHECK_THAT(rot.output, Contains(dir + "/flipped.pt: corrupt checkpoint: its record archive/data/") &&
                             Contains("fails the zip CRC-32 check"));
  auto file = run(zoo_bin() + " train --config " + q(cfg) + " --run-dir " + q(config));
  CHECK(file.code == 2);
  CHECK_THAT(file.output, Contains("--run-dir " + config + ": is a file, not a directory"));
  // A learning rate that makes the loss overflow: the run stops, saying so, before any checkpoint.
  auto nan = run(zoo_bin() + " train --config " + q(cfg) +
                 " --set optim.lr=1e30 --set train.grad_clip=0 --set train.log_every=1 --run-dir " + q(dir + "/nan"));
  CHECK(nan.code == 1);
  CHECK_THAT(nan.output, Contains("training diverged: loss is") && Contains("nothing was saved"));
  CHECK(zoo::list_step_checkpoints(dir + "/nan/checkpoints").empty());
  CHECK(!fs::exists(dir + "/nan/checkpoints/best.pt"));
  // Restarts leave a diverged seed out; when every one diverges, the run says so.
  auto all = run(zoo_bin() + " train --config " + q(cfg) + " --set optim.lr=1e30 --set train.grad_clip=0 --set train.log_every=1 "
                 "--set train.restarts=2 --run-dir " + q(dir + "/nan2"));
  CHECK(all.code == 1);
  CHECK_THAT(all.output, Contains("restart seed 3 left out: training diverged") &&
                             Contains("restart seed 4 left out: training diverged") &&
                             Contains("train.restarts: every restart diverged"));
}

TEST_CASE("zoo average: one checkpoint of the mean weights of a run's last checkpoints, evaluated like any",
          "[cli][checkpoint]") {
  auto dir = zoo::test::scratch("cli-average");
  auto cfg = tiny_config(dir, 12);
  const auto rd = dir + "/run";
  REQUIRE(run(zoo_bin() + " train --config " + q(cfg) + " --set train.keep_last=3 --run-dir " + q(rd)).code == 0);
  const auto steps = zoo::list_step_checkpoints(rd + "/checkpoints");
  REQUIRE(steps.size() == 3);  // steps 4, 8 and 12
  const auto out = dir + "/average.pt";
  auto made = run(zoo_bin() + " average --run-dir " + q(rd) + " --out " + q(out));  // up to 5: the 3 the run keeps
  INFO(made.output);
  REQUIRE(made.code == 0);
  CHECK_THAT(made.output, Contains("wrote " + out + ": the average of 3 checkpoints"));

  // Its weights are the mean of the three checkpoints' weights as evaluated (their EMA weights).
  auto weights = [](zoo::Task& t) {
    std::vector<torch::Tensor> w;
    for (auto& p : t.model().named_parameters()) w.push_back(p.value().detach().to(torch::kFloat64));
    for (auto& b : t.model().named_buffers())
      if (b.value().is_floating_point()) w.push_back(b.value().detach().to(torch::kFloat64));
    return w;
  };
  std::vector<torch::Tensor> mean;
  for (const auto& path : steps) {
    auto t = zoo::load_task(path, {});
    auto w = weights(*t);
    if (mean.empty()) mean = w;
    else for (size_t j = 0; j < w.size(); ++j) mean[j] += w[j];
  }
  zoo::Config stored;
  auto avg = zoo::load_task(out, {}, &stored);
  auto got = weights(*avg);
  REQUIRE(got.size() == mean.size());
  for (size_t j = 0; j < got.size(); ++j) CHECK(torch::allclose(got[j], mean[j] / 3.0, 1e-6, 1e-7));
  CHECK_FALSE(torch::allclose(got[0], weights(*zoo::load_task(steps.back(), {}))[0]));  // not the last one alone
  CHECK_FALSE(stored.get_bool("train.ema"));  // the averaged weights are already the EMA's
  auto archive = zoo::read_checkpoint(out);
  CHECK(zoo::checkpoint_step(archive) == 12);
  auto eval = run(zoo_bin() + " eval --checkpoint " + q(out));
  CHECK(eval.code == 0);
  CHECK(nlohmann::json::parse(last_line(eval.output)).contains("accuracy"));

  // Bad input: too few, a repeat, another model, an output over a checkpoint.
  check_refused("average --run-dir " + q(rd) + " --last 4 --out " + q(dir + "/a.pt"),
                "--run-dir " + rd + ": holds 3 step checkpoints, fewer than --last 4; pass a smaller --last");
  check_refused("average " + q(steps[0]) + " --out " + q(dir + "/a.pt"), "1 checkpoint given; average at least two");
  fs::create_directories(dir + "/restarted/restarts/seed-0/checkpoints");  // the layout of train.restarts > 1
  check_refused("average --run-dir " + q(dir + "/restarted") + " --out " + q(dir + "/a.pt"),
                "--run-dir " + dir + "/restarted: a run of restarts keeps its step checkpoints in each restart's folder; "
                "pass --run-dir " + dir + "/restarted/restarts/seed-S");
  check_refused("average " + q(steps[0]) + " " + q(steps[0]) + " --out " + q(dir + "/a.pt"),
                steps[0] + " is given twice; give each checkpoint once");
  check_refused("average " + q(steps[0]) + " " + q(steps[1]) + " --out " + q(out),
                "--out " + out + ": would overwrite a checkpoint");
  check_refused("average " + q(steps[0]) + " " + q(steps[1]), "--out is required");
  check_refused("average " + q(steps[2]) + " " + q(rd + "/checkpoints/best.pt") + " --out " + q(dir + "/a.pt"),
                steps[2] + " holds the same weights as " + rd + "/checkpoints/best.pt");
  REQUIRE(run(zoo_bin() + " train --config " + q(cfg) + " --set model.heads=1 --set train.steps=4 --run-dir " +
              q(dir + "/one"))
              .code == 0);
  check_refused("average " + q(dir + "/one/checkpoints/step-00000004.pt") + " " + q(steps[1]) + " --out " + q(dir + "/a.pt"),
                "/one/checkpoints/step-00000004.pt was trained with model.heads=1 and " + steps[1] +
                    " with 2; average checkpoints of one run");
  CHECK_FALSE(fs::exists(dir + "/a.pt"));

  // Things in checkpoints/ with a step checkpoint's look are not step checkpoints: a resume that
  // keeps 1 keeps its own, not a folder or a file with letters for digits.
  fs::create_directories(rd + "/checkpoints/step-00000099.pt");
  std::ofstream(rd + "/checkpoints/step-0000abcd.pt") << "x";
  CHECK(zoo::list_step_checkpoints(rd + "/checkpoints") == steps);
  REQUIRE(run(zoo_bin() + " train --config " + q(cfg) + " --set train.keep_last=1 --set train.steps=16 --run-dir " + q(rd) +
              " --resume").code == 0);
  CHECK(zoo::list_step_checkpoints(rd + "/checkpoints") == std::vector<std::string>{rd + "/checkpoints/step-00000016.pt"});
  // ... but a folder where the run may write one (a step it reaches; best.pt) is refused before it
  // trains, not when the checkpoint fails.
  check_refused("train --config " + q(cfg) + " --set train.steps=100 --run-dir " + q(rd) + " --resume",
                rd + "/checkpoints/step-00000099.pt: is a folder where this run may write a checkpoint; move it away");
  CHECK(zoo::list_step_checkpoints(rd + "/checkpoints") == std::vector<std::string>{rd + "/checkpoints/step-00000016.pt"});
  fs::create_directories(dir + "/fresh/checkpoints/step-00000004.pt");
  check_refused("train --config " + q(cfg) + " --run-dir " + q(dir + "/fresh"),
                dir + "/fresh/checkpoints/step-00000004.pt: is a folder where this run may write a checkpoint");
  CHECK_FALSE(fs::exists(dir + "/fresh/metrics.jsonl"));
  fs::create_directories(dir + "/fresh2/checkpoints/best.pt");  // not "already holds a run's checkpoints"
  check_refused("train --config " + q(cfg) + " --run-dir " + q(dir + "/fresh2"),
                dir + "/fresh2/checkpoints/best.pt: is a folder where this run may write a file; move it away");
}

TEST_CASE("zoo export: the weights a checkpoint is evaluated with, in a smaller file that evaluates the same",
          "[cli][checkpoint]") {
  auto dir = zoo::test::scratch("cli-export");
  auto cfg = tiny_config(dir, 4);
  const auto rd = dir + "/run";
  REQUIRE(run(zoo_bin() + " train --config " + q(cfg) + " --set train.ema=true --run-dir " + q(rd)).code == 0);
  const auto ckpt = rd + "/checkpoints/step-00000004.pt", out = dir + "/weights.pt";
  auto made = run(zoo_bin() + " export --checkpoint " + q(ckpt) + " --out " + q(out));
  INFO(made.output);
  REQUIRE(made.code == 0);
  CHECK_THAT(made.output, Contains("wrote " + out + ": the weights of " + ckpt + " (step 4)"));
  CHECK(fs::file_size(out) * 2 < fs::file_size(ckpt));  // no optimizer state, no second copy of the weights

  // The weights evaluated (the EMA's), bit for bit, and so the same metrics.
  auto tensors = [](zoo::Task& t) {
    std::vector<torch::Tensor> w;
    for (auto& p : t.model().named_parameters()) w.push_back(p.value().detach().clone());
    for (auto& b : t.model().named_buffers()) w.push_back(b.value().detach().clone());
    return w;
  };
  zoo::Config stored;
  auto from = tensors(*zoo::load_task(ckpt, {})), got = tensors(*zoo::load_task(out, {}, &stored));
  REQUIRE(got.size() == from.size());
  for (size_t j = 0; j < got.size(); ++j) CHECK(torch::equal(got[j], from[j]));
  CHECK_FALSE(stored.get_bool("train.ema"));  // the weights are already the EMA's
  auto archive = zoo::read_checkpoint(out);
  CHECK(zoo::checkpoint_step(archive) == 4);
  auto e1 = run(zoo_bin() + " eval --checkpoint " + q(ckpt) + " --split val");
  auto e2 = run(zoo_bin() + " eval --checkpoint " + q(out) + " --split val");
  REQUIRE(e1.code == 0);
  REQUIRE(e2.code == 0);
  CHECK(last_line(e1.output) == last_line(e2.output));

  // Nothing to resume from, and bad input.
  fs::create_directories(dir + "/again/checkpoints");
  fs::copy_file(out, dir + "/again/checkpoints/step-00000004.pt");
  check_refused("train --config " + q(cfg) + " --set train.steps=8 --run-dir " + q(dir + "/again") + " --resume",
                dir + "/again/checkpoints/step-00000004.pt: holds no optimizer state (a file of zoo export or zoo "
                "average, for evaluating); move it out of checkpoints/ and --resume again");
  check_refused("export --checkpoint " + q(ckpt), "zoo export: --out is required");
  check_refused("export --out " + q(dir + "/w.pt"), "zoo export: --checkpoint is required");
  check_refused("export --checkpoint " + q(ckpt) + " --out " + q(out), "--out " + out + ": would overwrite a checkpoint");
  check_refused("export --checkpoint " + q(ckpt) + " --out " + q(dir + "/best.pt"),
                "--out " + dir + "/best.pt: best.pt is a name the trainer gives its own checkpoints");
  check_refused("export --checkpoint " + q(dir + "/none.pt") + " --out " + q(dir + "/w.pt"), dir + "/none.pt");
  CHECK_FALSE(fs::exists(dir + "/w.pt"));
}

TEST_CASE("a run killed with SIGKILL resumes from its last checkpoint and finishes", "[cli][resume]") {
  auto dir = zoo::test::scratch("cli-kill");
  auto cfg = tiny_config(dir, 400);
  auto run_dir = dir + "/run";
  auto killed = train_then_signal(cfg, run_dir, "KILL");  // mid-run, after its first checkpoint
  CHECK_THAT(killed.output, Contains("code=137"));
  REQUIRE_FALSE(zoo::list_step_checkpoints(run_dir + "/checkpoints").empty());
  const auto newest = zoo::list_step_checkpoints(run_dir + "/checkpoints").back();
  // Every checkpoint left behind loads.
  for (const auto& c : zoo::list_step_checkpoints(run_dir + "/checkpoints")) CHECK_NOTHROW(zoo::read_checkpoint(c));
  // A kill in the middle of a write leaves atomic_write's temporary file (no process has this pid):
  // the resumed run clears it.
  const auto leftover = run_dir + "/checkpoints/.step-00000001.pt.tmp.2147483647";
  std::ofstream(leftover) << "half a checkpoint";

  auto resumed = run(zoo_bin() + " train --config " + q(cfg) + " --run-dir " + q(run_dir) + " --resume");
  INFO(resumed.output);
  REQUIRE(resumed.code == 0);
  CHECK_THAT(resumed.output, Contains("resumed from " + newest) && !Contains("changed from its stored config"));
  CHECK_FALSE(fs::exists(leftover));
  auto final_metrics = nlohmann::json::parse(last_line(resumed.output));
  CHECK(final_metrics["step"] == 400);

  auto eval = run(zoo_bin() + " eval --checkpoint " + q(run_dir + "/checkpoints/best.pt") + " --split val");
  INFO(eval.output);
  REQUIRE(eval.code == 0);
  auto m = nlohmann::json::parse(last_line(eval.output));
  CHECK(m["accuracy"].get<double>() > 0.2);
  CHECK(m["examples"].get<double>() == 500);
}

TEST_CASE("Ctrl-C (SIGINT) saves a checkpoint and exits with 130", "[cli][resume]") {
  auto dir = zoo::test::scratch("cli-int");
  const auto cfg = dir + "/tiny.yaml";
  {  // no periodic checkpoint: the one there is afterwards is the interrupt's
    auto yaml = zoo::test::tiny_vit_yaml(100000);
    const std::string every = "checkpoint_every: 4";
    const auto at = yaml.find(every);
    REQUIRE(at != std::string::npos);
    std::ofstream(cfg) << yaml.replace(at, every.size(), "checkpoint_every: 1000000");
  }
  auto run_dir = dir + "/run";
  auto r = train_then_signal(cfg, run_dir, "INT", /*on_log=*/true);
  INFO(r.output);
  CHECK_THAT(r.output, Contains("code=130"));
  CHECK_THAT(r.output, Contains("interrupted at step") && Contains("--resume"));
  std::smatch at;
  REQUIRE(std::regex_search(r.output, at, std::regex("interrupted at step ([0-9]+)")));
  auto ckpts = zoo::list_step_checkpoints(run_dir + "/checkpoints");
  REQUIRE(ckpts.size() == 1);
  auto archive = zoo::read_checkpoint(ckpts.back());
  CHECK(zoo::checkpoint_step(archive) == std::stoll(at[1].str()));
  CHECK(zoo::checkpoint_step(archive) > 0);

  // In the final evaluation (here a wider model's, over the 10,000 test images) Ctrl-C ends the
  // process at once, saying the checkpoints are saved; --resume evaluates again.
  auto wide = dir + "/wide.yaml";
  std::ofstream(wide) << "task: vit_fashion_mnist\n"
                         "model: {patch_size: 4, dim: 128, depth: 4, heads: 4, mlp_dim: 256}\n"
                         "data: {root: " + zoo::test::yaml_str(zoo::test::data_root()) + ", train_limit: 500}\n"
                         "train: {device: cpu, threads: 1, batch_size: 8, steps: 2, log_every: 1, eval_every: 0, "
                         "checkpoint_every: 2}\n";
  const auto log = dir + "/wide.log", rd = dir + "/wide";
  auto in_eval = run("(" + zoo_bin() + " train --config " + q(wide) + " --run-dir " + q(rd) + " > " + q(log) +
                     " 2>&1 & pid=$!; for i in $(seq 6000); do grep -q 'eval val @ step 2' " + q(log) +
                     " && break; kill -0 $pid || break; sleep 0.05; done; kill -INT $pid; wait $pid; echo code=$?; cat " + q(log) + ")");
  INFO(in_eval.output);
  CHECK_THAT(in_eval.output, Contains("code=130"));
  CHECK_THAT(in_eval.output, Contains("zoo: interrupted in the final evaluation; the checkpoints of step 2 are saved: "
                                      "evaluate again with --resume --run-dir " + rd));
  CHECK_FALSE(Contains("eval test @").match(in_eval.output));
  // Resumed (twice: the second evaluates again too), metrics.jsonl holds the final evaluation's
  // rows once: the interrupted one's val row is not kept beside the new one.
  for (int i = 0; i < 2; ++i) {
    auto again = run(zoo_bin() + " train --config " + q(wide) + " --run-dir " + q(rd) + " --resume");
    INFO(again.output);
    CHECK(again.code == 0);
    CHECK_THAT(again.output, Contains("eval test @ step 2"));
    std::ifstream rows(rd + "/metrics.jsonl");
    std::map<std::string, int> at_step_2;
    for (std::string line; std::getline(rows, line);) {
      auto row = nlohmann::json::parse(line);
      if (row.value("step", 0) == 2) ++at_step_2[row["split"].get<std::string>()];
    }
    CHECK(at_step_2 == std::map<std::string, int>{{"train", 1}, {"val", 1}, {"test", 1}});
  }
}

TEST_CASE("zoo train --resume without --run-dir finds the newest run of the task, restarts runs too", "[cli][resume]") {
  auto dir = zoo::test::scratch("cli-resume-newest");
  tiny_config(dir, 8);
  auto first = run("cd " + q(dir) + " && " + zoo_bin() + " train --config tiny.yaml --set train.restarts=2 --run-dir runs/r");
  INFO(first.output);
  REQUIRE(first.code == 0);
  // A restarts run keeps its step checkpoints in restarts/seed-S/checkpoints, none at the top.
  REQUIRE(zoo::list_step_checkpoints(dir + "/runs/r/checkpoints").empty());
  // An older run of the same task beside it is not the one resumed.
  fs::create_directories(dir + "/runs/older/checkpoints");
  const auto seed3 = zoo::list_step_checkpoints(dir + "/runs/r/restarts/seed-3/checkpoints");
  REQUIRE_FALSE(seed3.empty());
  const auto older = dir + "/runs/older/checkpoints/" + zoo::step_checkpoint_name(4);
  fs::copy_file(seed3.front(), older);
  fs::last_write_time(older, fs::last_write_time(seed3.front()) - std::chrono::hours(1));
  auto resumed = run("cd " + q(dir) + " && " + zoo_bin() + " train --config tiny.yaml --set train.restarts=2 --resume");
  INFO(resumed.output);
  REQUIRE(resumed.code == 0);
  CHECK_THAT(resumed.output, Contains("runs/r/restarts/seed-4"));
  // The finished run, resumed, picks the same best restart as it did.
  const auto seed = nlohmann::json::parse(last_line(resumed.output))["seed"];
  CHECK(seed == nlohmann::json::parse(last_line(first.output))["seed"]);
}
