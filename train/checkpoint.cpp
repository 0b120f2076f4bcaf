#include "train/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "models/wordpiece.h"
#include "train/config.h"

namespace fs = std::filesystem;

namespace zoo {
namespace {

/// The first line of a torch error, without what is addressed to PyTorch's developers: its
/// "[enforce fail at FILE:LINE] . " prefix and its "(Could this error message be improved? ...)".
std::string first_line(const std::string& s) {
  auto nl = s.find('\n');
  auto line = nl == std::string::npos ? s : s.substr(0, nl);
  if (line.rfind("[enforce fail at ", 0) == 0)
    if (auto end = line.find("] "); end != std::string::npos) {
      line = line.substr(end + 2);
      if (line.rfind(". ", 0) == 0) line = line.substr(2);
    }
  if (auto plea = line.find("  (Could this error message be improved?"); plea != std::string::npos) line = line.substr(0, plea);
  return line;
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

/// CRC-32 of zip (IEEE 802.3, reflected, polynomial 0xEDB88320), four bytes a step
/// ("slicing by 4": Kounavis and Berry 2008).
uint32_t crc32(uint32_t crc, const unsigned char* p, size_t n) {
  static const auto t = [] {
    std::array<std::array<uint32_t, 256>, 4> table{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (size_t s = 1; s < 4; ++s) table[s][i] = (table[s - 1][i] >> 8) ^ table[0][table[s - 1][i] & 0xFF];
    return table;
  }();
  crc = ~crc;
  for (; n >= 4; p += 4, n -= 4) {
    crc ^= uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
    crc = t[3][crc & 0xFF] ^ t[2][(crc >> 8) & 0xFF] ^ t[1][(crc >> 16) & 0xFF] ^ t[0][crc >> 24];
  }
  for (; n > 0; ++p, --n) crc = (crc >> 8) ^ t[0][(crc ^ *p) & 0xFF];
  return ~crc;
}

/// The first record of the zip archive `in` (of `size` bytes) whose bytes do not match the CRC-32 its central
/// directory gives; "" when every record matches. torch's reader does not check these, so a
/// flipped bit in a tensor would load as a wrong weight. A file this cannot parse as a plain zip
/// of stored records (zip64, compression) is left to torch's reader: "". A compressed tensor
/// record is refused (UsageError naming `path`).
std::string corrupt_record(std::istream& in, uint64_t size, int64_t* data_bytes, const std::string& path) {
  *data_bytes = -1;  // unknown until every record has been read from the directory
  auto read = [&](uint64_t at, size_t n) {
    std::string b(n, '\0');
    in.seekg(static_cast<std::streamoff>(at));
    in.read(b.data(), static_cast<std::streamsize>(n));
    if (static_cast<size_t>(in.gcount()) != n) b.clear();
    in.clear();
    return b;
  };
  auto u16 = [](const std::string& b, size_t i) {
    return static_cast<uint32_t>(static_cast<unsigned char>(b[i]) | static_cast<unsigned char>(b[i + 1]) << 8);
  };
  auto u32 = [&](const std::string& b, size_t i) { return u16(b, i) | u16(b, i + 2) << 16; };
  if (size < 22) return "";
  const auto eocd = read(size - 22, 22);  // torch writes no archive comment
  if (eocd.size() != 22 || u32(eocd, 0) != 0x06054b50) return "";
  const uint32_t entries = u16(eocd, 10), dir_size = u32(eocd, 12), dir_at = u32(eocd, 16);
  if (entries == 0xFFFF || dir_at == 0xFFFFFFFF || uint64_t{dir_at} + dir_size > size) return "";
  const auto dir = read(dir_at, dir_size);
  std::vector<unsigned char> chunk(1 << 20);
  int64_t total = 0;
  bool known = true;
  for (size_t i = 0, k = 0; k < entries; ++k) {
    if (i + 46 > dir.size() || u32(dir, i) != 0x02014b50) return "";
    const uint32_t method = u16(dir, i + 10), crc = u32(dir, i + 16), stored = u32(dir, i + 20);
    const uint32_t name_len = u16(dir, i + 28), extra_len = u16(dir, i + 30), comment_len = u16(dir, i + 32);
    const uint32_t local_at = u32(dir, i + 42);
    const auto name = dir.substr(i + 46, name_len);
    i += 46 + name_len + extra_len + comment_len;
    const bool tensor_data = name.find("/data/") != std::string::npos;
    // torch writes every record stored; a compressed tensor record is a hand's (and what it
    // inflates to is not checked against its tensors below).
    if (method != 0 && tensor_data)
      throw UsageError(path + ": damaged checkpoint: its tensor record " + name + " is compressed, which torch never "
                       "writes; use another file from the run's checkpoints/");
    // Not checked: compressed or zip64 records, and a CRC of 0 (a writer that computed none).
    if (method != 0 || stored == 0xFFFFFFFF || local_at == 0xFFFFFFFF) {
      known = known && !tensor_data;
      continue;
    }
    if (tensor_data) total += stored;
    if (crc == 0) continue;
    const auto local = read(local_at, 30);
    if (local.size() != 30 || u32(local, 0) != 0x04034b50) return name;
    uint64_t at = uint64_t{local_at} + 30 + u16(local, 26) + u16(local, 28);
    if (at + stored > size) return name;
    in.seekg(static_cast<std::streamoff>(at));
    uint32_t c = 0;
    for (uint64_t left = stored; left > 0;) {
      const auto n = static_cast<size_t>(std::min<uint64_t>(left, chunk.size()));
      in.read(reinterpret_cast<char*>(chunk.data()), static_cast<std::streamsize>(n));
      if (static_cast<size_t>(in.gcount()) != n) return name;
      c = crc32(c, chunk.data(), n);
      left -= n;
    }
    if (c != crc) return name;
  }
  if (known) *data_bytes = total;
  return "";
}

/// Every storage of the tensors in `v` (each once, with the bytes it claims); throws UsageError
/// naming `path` for a tensor that reaches past its storage's end. torch's reader takes each
/// tensor's sizes, strides and offset from the pickle and checks none of them against the storage.
void collect_storages(const c10::IValue& v, std::unordered_map<const void*, std::pair<const void*, uint64_t>>& seen,
                      const std::string& path, std::unordered_set<const void*>& walked, int depth = 0) {
  // A pickle can share a container (or hold one in itself): each is walked once, and not deep.
  if ((v.isObject() || v.isList() || v.isTuple() || v.isGenericDict()) && !walked.insert(v.internalToPointer()).second)
    return;
  if (depth > 256)
    throw UsageError(path + ": damaged checkpoint: its values nest over 256 deep; use another file from the run's "
                     "checkpoints/");
  if (v.isTensor()) {
    const auto& t = v.toTensor();
    if (!t.defined() || !t.has_storage()) return;
    const auto nbytes = static_cast<uint64_t>(t.storage().nbytes());
    seen[t.storage().unsafeGetStorageImpl()] = {t.storage().data(), nbytes};
    if (t.numel() == 0) return;
    // The last element's offset, in elements: storage_offset + sum (size_i - 1) stride_i.
    bool ok = t.storage_offset() >= 0;
    uint64_t last = static_cast<uint64_t>(std::max<int64_t>(0, t.storage_offset()));
    for (int64_t d = 0; ok && d < t.dim(); ++d) {
      uint64_t reach = 0;
      ok = t.stride(d) >= 0 &&
           !__builtin_mul_overflow(static_cast<uint64_t>(t.size(d) - 1), static_cast<uint64_t>(t.stride(d)), &reach) &&
           !__builtin_add_overflow(last, reach, &last);
    }
    uint64_t end = 0;
    ok = ok && !__builtin_add_overflow(last, uint64_t{1}, &end) &&
         !__builtin_mul_overflow(end, static_cast<uint64_t>(t.element_size()), &end) && end <= nbytes;
    if (!ok) {
      std::ostringstream os;
      os << path << ": damaged checkpoint: a tensor of shape " << t.sizes() << " reaches past the " << nbytes
         << " bytes of its storage; use another file from the run's checkpoints/";
      throw UsageError(os.str());
    }
  } else if (v.isObject()) {
    for (const auto& slot : v.toObjectRef().slots()) collect_storages(slot, seen, path, walked, depth + 1);
  } else if (v.isList()) {
    for (const auto& x : v.toListRef()) collect_storages(x, seen, path, walked, depth + 1);
  } else if (v.isTuple()) {
    for (const auto& x : v.toTupleRef().elements()) collect_storages(x, seen, path, walked, depth + 1);
  } else if (v.isGenericDict()) {
    for (const auto& kv : v.toGenericDict()) collect_storages(kv.value(), seen, path, walked, depth + 1);
  }
}

}  // namespace

void atomic_write(const std::string& path, const std::string& bytes) {
  fs::path target(path);
  if (fs::is_directory(fs::symlink_status(target)))
    throw UsageError(path + ": is a folder where zoo writes a file; move it away");
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

size_t remove_stale_temporaries(const std::string& dir) {
  size_t removed = 0;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto name = e.path().filename().string();
    const auto at = name.rfind(".tmp.");
    if (name.rfind('.', 0) != 0 || at == std::string::npos || at + 5 == name.size() ||
        name.find_first_not_of("0123456789", at + 5) != std::string::npos || !e.is_regular_file(ec))
      continue;
    const auto pid = std::strtoll(name.c_str() + at + 5, nullptr, 10);
    const bool alive = pid > 0 && pid <= INT32_MAX && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
    if (!alive && fs::remove(e.path(), ec)) ++removed;
  }
  return removed;
}

void remove_tree(const std::string& path, std::error_code& ec) {
  const auto status = fs::symlink_status(path, ec);
  if (status.type() == fs::file_type::not_found) {  // nothing to remove (or gone meanwhile)
    ec.clear();
    return;
  }
  if (!ec && fs::is_directory(status)) {
    std::vector<std::string> entries;
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
      entries.push_back(it->path().string());
    for (const auto& e : entries)
      if (!ec) remove_tree(e, ec);
  }
  if (!ec) fs::remove(path, ec);
}

void write_checkpoint(torch::serialize::OutputArchive& archive, const std::vector<std::string>& paths) {
  archive.write("zoo/format", c10::IValue(std::string(kCheckpointFormat)));
  archive.write("zoo/version", c10::IValue(kCheckpointVersion));
  std::ostringstream bytes;
  archive.save_to(bytes);
  const auto data = bytes.str();
  for (const auto& p : paths) atomic_write(p, data);
}

namespace {

/// Loads the archive in `file` (`size` bytes; named `path` in messages), its tensors on the CPU;
/// UsageError on a file torch can't read. `reads` gets each buffer torch's reader filled and the
/// bytes it read into it: a stored record is read into the buffer that becomes its storage, so a
/// storage's data pointer leads to the size of its record. (A read that goes on where the last
/// one into a buffer ended counts with it, should a reader take a record in pieces.)
void load_archive(torch::serialize::InputArchive& archive, std::istream& file, uint64_t size, const std::string& path,
                  std::unordered_map<const void*, uint64_t>& reads) {
  // Where a read ended in memory -> the buffer it began, and where it ended in the file.
  std::unordered_map<const char*, std::pair<const char*, uint64_t>> ends;
  auto read = [&](uint64_t pos, void* buf, size_t n) -> size_t {
    file.clear();
    file.seekg(static_cast<std::streamoff>(pos));
    file.read(static_cast<char*>(buf), static_cast<std::streamsize>(n));
    const auto got = static_cast<size_t>(std::max<std::streamsize>(0, file.gcount()));
    const auto* at = static_cast<const char*>(buf);
    const char* start = at;
    if (const auto it = ends.find(at); it != ends.end() && it->second.second == pos) {
      start = it->second.first;
      ends.erase(it);
      reads[start] += got;
    } else {
      reads[start] = got;
    }
    ends[at + got] = {start, pos + got};
    return got;
  };
  try {
    archive.load_from(read, [size] { return static_cast<size_t>(size); }, torch::Device(torch::kCPU));
  } catch (const std::bad_alloc&) {
    throw;  // this machine's memory, not the file (whose records the zip check bounded by its size)
  } catch (const c10::Error& e) {
    // The same: a resume must not pass over the newest checkpoint as damaged for want of memory.
    if (std::string(e.what_without_backtrace()).find("can't allocate memory") != std::string::npos) throw;
    throw UsageError(path + ": not a readable checkpoint (truncated or not a torch archive: " +
                     first_line(e.what_without_backtrace()) + "); use another file from the run's checkpoints/");
  } catch (const std::exception& e) {  // e.g. std::stoull on a damaged archive/version record
    throw UsageError(path + ": not a readable checkpoint (" + first_line(e.what()) +
                     "); use another file from the run's checkpoints/");
  }
}

}  // namespace

torch::serialize::InputArchive read_checkpoint(const std::string& path, const torch::Device& device) {
  if (!fs::is_regular_file(path)) {
    std::error_code ec;
    if (fs::is_directory(path, ec))
      throw UsageError(path + ": is a directory; give a checkpoint file in it (runs/<run>/checkpoints/ holds step-*.pt "
                       "and best.pt)");
    if (fs::exists(path, ec))
      throw UsageError(path + ": is not a regular file (a pipe or device); give a checkpoint file");
    throw UsageError(path + ": no such checkpoint file (runs/<run>/checkpoints/ holds step-*.pt and best.pt)");
  }
  std::ifstream file(path, std::ios::binary);
  if (const int err = errno; !file)
    throw UsageError(path + ": cannot be opened (" + std::strerror(err) + "); check the file's permissions");
  // One open file for every check and load below: a file renamed over `path` meanwhile (a running
  // training's new best.pt) is not half read.
  file.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(std::max<std::streamoff>(0, file.tellg()));
  int64_t data_bytes = -1;
  if (const auto record = corrupt_record(file, size, &data_bytes, path); !record.empty())
    throw UsageError(path + ": corrupt checkpoint: its record " + record +
                     " fails the zip CRC-32 check (the file changed after it was written); use another file from "
                     "the run's checkpoints/");
  // First on the CPU, whatever device wrote it: the checks below run before any tensor is
  // copied to a GPU.
  torch::serialize::InputArchive archive;
  std::unordered_map<const void*, uint64_t> reads;
  load_archive(archive, file, size, path, reads);
  c10::IValue format, version;
  if (!archive.try_read("zoo/format", format) || !format.isString() || format.toStringRef() != kCheckpointFormat)
    throw UsageError(path + ": a torch archive but not a zoo checkpoint (no zoo/format header); pass a file "
                            "written by `zoo train`");
  if (!archive.try_read("zoo/version", version) || !version.isInt() || version.toInt() > kCheckpointVersion)
    throw UsageError(path + ": checkpoint format version " + (version.isInt() ? std::to_string(version.toInt()) : "?") +
                     " is newer than this zoo reads (" + std::to_string(kCheckpointVersion) + "); update zoo");
  // Records shorter than the storages made of them, or tensors reaching past their storages (a
  // crafted or mis-packed file, its CRCs intact): torch's reader takes every size from the pickle,
  // and the first read of such a tensor would run past the end of its buffer.
  std::unordered_map<const void*, std::pair<const void*, uint64_t>> storages;
  std::unordered_set<const void*> walked;
  for (const auto& key : archive.keys()) {
    c10::IValue v;
    if (archive.try_read(key, v)) collect_storages(v, storages, path, walked);
  }
  uint64_t unmatched = 0;  // storages whose record was not read straight into them (a compressed record)
  for (const auto& [impl, storage] : storages) {
    const auto [data, nbytes] = storage;
    if (nbytes == 0) continue;
    const auto it = reads.find(data);
    if (data == nullptr)  // an empty record (nothing read): no buffer at all behind the bytes claimed
      throw UsageError(path + ": damaged checkpoint: a tensor record holds 0 bytes but its storage needs " +
                       std::to_string(nbytes) + "; use another file from the run's checkpoints/");
    if (it == reads.end()) {
      unmatched += nbytes;
    } else if (nbytes > it->second) {
      throw UsageError(path + ": damaged checkpoint: a tensor record holds " + std::to_string(it->second) +
                       " bytes but its storage needs " + std::to_string(nbytes) +
                       "; use another file from the run's checkpoints/");
    }
  }
  if (data_bytes >= 0 && unmatched > static_cast<uint64_t>(data_bytes))
    throw UsageError(path + ": damaged checkpoint: its tensor records hold " + std::to_string(data_bytes) +
                     " bytes but its tensors need " + std::to_string(unmatched) +
                     "; use another file from the run's checkpoints/");
  if (device.is_cpu()) return archive;
  // The file read on the CPU already: an error now is the device's (out of its memory), not the
  // file's, and goes out as it is rather than as a damaged checkpoint (which a resume passes over).
  torch::serialize::InputArchive on_device;
  file.clear();
  file.seekg(0);
  on_device.load_from(file, device);
  return on_device;
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

int64_t step_of_checkpoint_name(const std::string& path) {
  const auto name = fs::path(path).filename().string();
  if (name.size() < 16 || name.size() > 26 || name.rfind("step-", 0) != 0 || name.substr(name.size() - 3) != ".pt")
    return -1;
  const auto digits = name.substr(5, name.size() - 8);
  if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return digits.size() <= 18 ? std::stoll(digits) : -1;
}

void copy_archive(torch::serialize::InputArchive& in, torch::serialize::OutputArchive& out) {
  for (const auto& key : in.keys()) {
    if (key == "training") continue;  // every archive's module has it
    torch::serialize::InputArchive sub;
    torch::Tensor t;
    c10::IValue v;
    if (in.try_read(key, sub)) {
      torch::serialize::OutputArchive o;
      copy_archive(sub, o);
      out.write(key, o);
    } else if (in.try_read(key, t, /*is_buffer=*/true)) {
      out.write(key, t, /*is_buffer=*/true);
    } else if (in.try_read(key, v)) {
      out.write(key, v);
    }
  }
}

std::vector<std::string> list_step_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto step = step_of_checkpoint_name(e.path().string());
    if (step >= 0 && e.is_regular_file(ec)) found.emplace_back(step, e.path().string());  // not a folder, nor a link to nothing
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
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
    check_finite_weight(t, path + ": " + prefix + name);
    target.copy_(t);
  };
  std::set<std::string> known{"training"};  // every archive's module has it
  for (auto& p : module.named_parameters(/*recurse=*/false)) {
    load_tensor(p.key(), p.value(), false);
    known.insert(p.key());
  }
  for (auto& b : module.named_buffers(/*recurse=*/false)) {
    load_tensor(b.key(), b.value(), true);
    known.insert(b.key());
  }
  for (auto& c : module.named_children()) {
    if (!c.value()->is_serializable()) continue;  // Module::save leaves it out (a torch::nn::Functional)
    torch::serialize::InputArchive sub;
    if (!archive.try_read(c.key(), sub))
      throw UsageError(path + ": " + prefix + c.key() + " is missing (the checkpoint was made for another model)");
    load_tree(*c.value(), sub, prefix + c.key() + ".", path);
    known.insert(c.key());
  }
  // Strict, as load_state_dict(strict=True): a weight the model has no place for (another
  // model's extra layer, a renamed parameter) is not dropped in silence.
  for (const auto& key : archive.keys())
    if (!known.count(key))
      throw UsageError(path + ": " + prefix + key + " is in the checkpoint but not in this model (the checkpoint was "
                       "made for another model)");
}

}  // namespace

void check_finite_weight(const torch::Tensor& t, const std::string& what) {
  if (t.is_floating_point() && !torch::isfinite(t).all().item<bool>())
    throw UsageError(what + " holds NaN or infinite values (a damaged checkpoint, or one of a run that diverged); use "
                     "an earlier checkpoint");
}

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
