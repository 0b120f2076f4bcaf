// Variable-length token sequences into padded batches.
#pragma once

#include <algorithm>
#include <vector>

#include <torch/torch.h>

#include "train/data/to_device.h"

namespace zoo {

/// Rows of ids padded with `fill` to the longest: (B, L) int64 on `device`.
inline torch::Tensor pad_sequences(const std::vector<const std::vector<int64_t>*>& rows, int64_t fill,
                                   const torch::Device& device) {
  size_t len = 0;
  for (auto* r : rows) len = std::max(len, r->size());
  auto out = torch::full({static_cast<int64_t>(rows.size()), static_cast<int64_t>(len)}, fill, torch::kLong);
  auto* p = out.data_ptr<int64_t>();
  for (size_t i = 0; i < rows.size(); ++i) std::copy(rows[i]->begin(), rows[i]->end(), p + i * len);
  return to_device(out, device);
}

}  // namespace zoo
