// Self-describing, atomically written checkpoints (a torch::serialize archive).
// Layout: "zoo/format" = "zoo-checkpoint", "zoo/version", "config" (resolved YAML),
// "step", "model/...", "ema/...", "optim/N/...", "rng/...", "task/..." (data position).
#pragma once

#include <string>
#include <system_error>
#include <vector>

#include <torch/torch.h>

namespace zoo {

class WordPiece;

constexpr int64_t kCheckpointVersion = 1;
constexpr const char* kCheckpointFormat = "zoo-checkpoint";

/// Writes `bytes` to `path` atomically: a temporary file in the same folder,
/// fsync, rename over `path`, fsync of the folder. A kill at any instant leaves
/// either the old file or the new one.
void atomic_write(const std::string& path, const std::string& bytes);

/// Removes the temporary files of atomic_write in `dir` (".NAME.tmp.PID") whose process is gone: what
/// a kill in the middle of a write leaves behind. Returns how many it removed.
size_t remove_stale_temporaries(const std::string& dir);

/// Removes a directory tree entry by entry (a link is removed, not followed); stops at the first
/// error, left in `ec`; a path that does not exist is no error. Not std::filesystem::remove_all:
/// a LibTorch 2.x libtorch.so exports its own copy, which the dynamic linker may pick and which
/// crashed on a non-empty folder (torch 2.11; README, Building).
void remove_tree(const std::string& path, std::error_code& ec);

/// Stamps format and version into `archive` and writes it atomically to each path.
void write_checkpoint(torch::serialize::OutputArchive& archive, const std::vector<std::string>& paths);

/// Opens a zoo checkpoint with its tensors on `device` (the CPU by default, so that a
/// checkpoint written on a GPU reads on a machine without one, like torch.load's
/// map_location). UsageError (exit 2) naming the path for a missing, truncated, foreign or
/// newer-format file.
torch::serialize::InputArchive read_checkpoint(const std::string& path,
                                               const torch::Device& device = torch::Device(torch::kCPU));

/// The resolved config YAML stored in a checkpoint.
std::string checkpoint_config(torch::serialize::InputArchive& archive, const std::string& path);
int64_t checkpoint_step(torch::serialize::InputArchive& archive);

/// Step checkpoints in `dir` (step-NNNNNNNN.pt, 8 or more digits, regular files), oldest first.
std::vector<std::string> list_step_checkpoints(const std::string& dir);
/// The step in a step checkpoint's file name (step-00000500.pt: 500); -1 for any other name.
int64_t step_of_checkpoint_name(const std::string& path);
std::string step_checkpoint_name(int64_t step);

/// Copies every entry of `in` (nested archives, tensors, values) into `out`.
void copy_archive(torch::serialize::InputArchive& in, torch::serialize::OutputArchive& out);

/// UsageError "`what` holds NaN or infinite values ..." when a floating-point weight read from a
/// checkpoint is not finite.
void check_finite_weight(const torch::Tensor& t, const std::string& what);

/// Loads a module's parameters and buffers from archive[key]; UsageError on mismatch.
void load_module(torch::nn::Module& module, torch::serialize::InputArchive& archive, const std::string& key,
                 const std::string& path);

/// A string a task stored in its state (archive["task"]); UsageError when it is missing.
std::string read_string(torch::serialize::InputArchive& state, const std::string& key);

/// The WordPiece vocabulary a task stored as state["vocab"]; UsageError when it is missing or damaged.
WordPiece read_vocab(torch::serialize::InputArchive& state);

}  // namespace zoo
