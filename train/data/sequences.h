// Variable-length token sequences into padded batches.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "models/common/sequences.h"
#include "train/data/to_device.h"

namespace zoo {

/// Rows of ids padded with `fill` to the longest: (B, L) int64 on `device`.
inline torch::Tensor pad_sequences(const std::vector<const std::vector<int64_t>*>& rows, int64_t fill,
                                   const torch::Device& device) {
  return to_device(pad_rows(rows, fill), device);
}

}  // namespace zoo
