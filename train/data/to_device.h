// Host tensors onto the training device without making the host wait.
#pragma once

#include <torch/torch.h>

namespace zoo {

/// `t` (on the CPU) on `device`. A plain copy from pageable memory to a GPU returns only when
/// the GPU has caught up, so a training step that makes a batch this way cannot run ahead of the
/// GPU; a copy from pinned memory is queued on the stream instead (the pinned block is kept
/// until the copy is done).
inline torch::Tensor to_device(const torch::Tensor& t, const torch::Device& device) {
  if (!device.is_cuda() || !t.device().is_cpu()) return t.to(device);
  return t.pin_memory().to(device, /*non_blocking=*/true);
}

}  // namespace zoo
