#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "models/wordpiece.h"
#include "train/config.h"

namespace fs = std::filesystem;

namespace zoo {
namespace {

std::string first_line(const std::string& s) {
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

void write_all(int fd, const std::string& bytes, const std::string& path) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error(path + ": write failed: " + std::strerror(errno));
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace

void atomic_write(const std::string& path, const std::string& bytes) {
  fs::path target(path);
  auto dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  fs::create_directories(dir);
  auto tmp = (dir / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()))).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error(tmp + ": cannot create: " + std::strerror(errno));
  try {
    write_all(fd, bytes, tmp);
    if (::fsync(fd) != 0) throw std::runtime_error(tmp + ": fsync failed: " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto err = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw std::runtime_error(path + ": rename failed: " + err);
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_checkpoint(torch::serialize::OutputArchive& archive, const std::vector<std::string>& paths) {
  archive.write("zoo/format", c10::IValue(std::string(kCheckpointFormat)));
  archive.write("zoo/version", c10::IValue(kCheckpointVersion));
  std::ostringstream bytes;
  archive.save_to(bytes);
  const auto data = bytes.str();
  for (const auto& p : paths) atomic_write(p, data);
}

torch::serialize::InputArchive read_checkpoint(const std::string& path) {
  if (!fs::is_regular_file(path))
    throw UsageError(path + ": no such checkpoint file (runs/<run>/checkpoints/ holds step-*.pt and best.pt)");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    throw UsageError(path + ": not a readable checkpoint (truncated or not a torch archive: " +
                     first_line(e.what_without_backtrace()) + "); use another file from the run's checkpoints/");
  }
  c10::IValue format, version;
  if (!archive.try_read("zoo/format", format) || !format.isString() || format.toStringRef() != kCheckpointFormat)
    throw UsageError(path + ": a torch archive but not a zoo checkpoint (no zoo/format header); pass a file "
                            "written by `zoo train`");
  if (!archive.try_read("zoo/version", version) || !version.isInt() || version.toInt() > kCheckpointVersion)
    throw UsageError(path + ": checkpoint format version " + (version.isInt() ? std::to_string(version.toInt()) : "?") +
                     " is newer than this zoo reads (" + std::to_string(kCheckpointVersion) + "); update zoo");
  return archive;
}

std::string checkpoint_config(torch::serialize::InputArchive& archive, const std::string& path) {
  c10::IValue v;
  if (!archive.try_read("config", v) || !v.isString()) throw UsageError(path + ": checkpoint holds no config");
  return v.toStringRef();
}

int64_t checkpoint_step(torch::serialize::InputArchive& archive) {
  c10::IValue v;
  return archive.try_read("step", v) && v.isInt() ? v.toInt() : 0;
}

std::string step_checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld.pt", static_cast<long long>(step));
  return buf;
}

std::vector<std::string> list_step_checkpoints(const std::string& dir) {
  std::vector<std::string> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    auto name = e.path().filename().string();
    if (name.size() == 16 && name.rfind("step-", 0) == 0 && name.substr(13) == ".pt") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// Module::save nests one archive per child module; walk the same tree, checking shapes
// (InputArchive::read would silently re-shape a parameter to whatever the file holds).
void load_tree(torch::nn::Module& module, torch::serialize::InputArchive& archive, const std::string& prefix,
               const std::string& path) {
  auto load_tensor = [&](const std::string& name, torch::Tensor& target, bool is_buffer) {
    torch::Tensor t;
    if (!archive.try_read(name, t, is_buffer))
      throw UsageError(path + ": " + prefix + name + " is missing (the checkpoint was made for another model)");
    if (t.sizes() != target.sizes()) {
      std::ostringstream os;
      os << path << ": " << prefix << name << " has shape " << t.sizes() << " but the model expects "
         << target.sizes() << " (the checkpoint's weights do not fit this config's model)";
      throw UsageError(os.str());
    }
    target.copy_(t);
  };
  for (auto& p : module.named_parameters(/*recurse=*/false)) load_tensor(p.key(), p.value(), false);
  for (auto& b : module.named_buffers(/*recurse=*/false)) load_tensor(b.key(), b.value(), true);
  for (auto& c : module.named_children()) {
    torch::serialize::InputArchive sub;
    if (!archive.try_read(c.key(), sub))
      throw UsageError(path + ": " + prefix + c.key() + " is missing (the checkpoint was made for another model)");
    load_tree(*c.value(), sub, prefix + c.key() + ".", path);
  }
}

}  // namespace

void load_module(torch::nn::Module& module, torch::serialize::InputArchive& archive, const std::string& key,
                 const std::string& path) {
  torch::serialize::InputArchive sub;
  if (!archive.try_read(key, sub)) throw UsageError(path + ": checkpoint has no '" + key + "' weights");
  try {
    torch::NoGradGuard no_grad;
    load_tree(module, sub, key + "/", path);
  } catch (const c10::Error& e) {
    throw UsageError(path + ": cannot load '" + key + "': " + first_line(e.what_without_backtrace()));
  }
}

std::string read_string(torch::serialize::InputArchive& state, const std::string& key) {
  c10::IValue v;
  if (!state.try_read(key, v) || !v.isString()) throw UsageError("the checkpoint's task state has no '" + key + "'");
  return v.toStringRef();
}

WordPiece read_vocab(torch::serialize::InputArchive& state) {
  try {
    return WordPiece::from_text(read_string(state, "vocab"));
  } catch (const std::runtime_error& e) {
    throw UsageError(std::string("the checkpoint's vocabulary is damaged (") + e.what() + ")");
  }
}

}  // namespace zoo
