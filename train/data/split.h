// Deterministic splits by key: an example's split is a function of its key (a word, a
// document or a message's body) alone, so it never depends on file order, platform or seed.
#pragma once

#include <cstdint>
#include <string>

namespace zoo {

/// 64-bit FNV-1a hash of the bytes of `key`.
inline uint64_t fnv1a(const std::string& key) {
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

/// "test" for the keys whose fnv1a(key) % 100 is in [100 - test_percent, 100), "val" for the
/// val_percent buckets below those, "train" otherwise.
inline std::string split_by_hash(const std::string& key, int val_percent, int test_percent) {
  const auto bucket = static_cast<int>(fnv1a(key) % 100);
  if (bucket >= 100 - test_percent) return "test";
  if (bucket >= 100 - test_percent - val_percent) return "val";
  return "train";
}

}  // namespace zoo
