// Variable-length token sequences into one padded tensor.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace zoo {

/// Rows of ids padded with `fill` to the longest: (B, L) int64 on the CPU.
inline torch::Tensor pad_rows(const std::vector<const std::vector<int64_t>*>& rows, int64_t fill) {
  size_t len = 0;
  for (auto* r : rows) len = std::max(len, r->size());
  auto out = torch::full({static_cast<int64_t>(rows.size()), static_cast<int64_t>(len)}, fill, torch::kLong);
  auto* p = out.data_ptr<int64_t>();
  for (size_t i = 0; i < rows.size(); ++i) std::copy(rows[i]->begin(), rows[i]->end(), p + i * len);
  return out;
}

}  // namespace zoo
