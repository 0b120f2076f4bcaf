#define CATCH_CONFIG_MAIN
#include "tests/catch.h"

#include <cstdlib>
#include <iostream>

#include "helpers.h"

namespace {

/// Removes a test case's scratch directories once it has passed, so that repeated runs of the
/// suite do not fill the temp folder; a failed test case keeps them for a look, and says where.
struct ScratchCleanup : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testCaseEnded(const Catch::TestCaseStats& stats) override {
    auto dirs = std::move(zoo::test::scratch_dirs());
    zoo::test::scratch_dirs().clear();
    const char* env = std::getenv("ZOO_KEEP_TEST_DIRS");
    const bool failed = stats.totals.assertions.failed > 0, keep = failed || (env && std::string(env) == "1");
    for (const auto& d : dirs) {
      if (keep) {
        if (failed) std::cerr << "kept the failed test case's scratch directory " << d << "\n";
        continue;
      }
      try {
        zoo::test::remove_tree(d);
      } catch (const std::exception& e) {
        std::cerr << "could not remove " << d << ": " << e.what() << "\n";
      }
    }
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(ScratchCleanup)
