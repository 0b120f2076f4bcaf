#pragma once
// Catch2 for zoo's tests, after LibTorch: c10/util/logging_is_not_google_glog.h defines a
// one-argument CHECK(condition) of its own. Included first (as the precompiled header does), its
// include guard keeps it from coming back, and Catch2's CHECK(...) replaces it; included after
// Catch2 (a build with ZOO_USE_PCH=OFF, or a test that includes a LibTorch header first) it would
// take CHECK over, and `CHECK(a == b, ...)`-shaped expressions stop compiling.
#include <torch/torch.h>

#undef CHECK
#include <catch2/catch.hpp>
