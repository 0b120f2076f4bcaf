// The global random-number generators' state: what a checkpoint saves so that a resumed run
// draws what an uninterrupted one would, and what FID puts back after drawing its samples.
#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

namespace zoo {

/// The CPU generator's state and, on a GPU, the device's (undefined on the CPU).
struct RngState {
  at::Tensor cpu, cuda;

  static RngState capture(const torch::Device& device) {
    return {at::detail::getDefaultCPUGenerator().get_state(),
            device.is_cuda() ? at::globalContext().defaultGenerator(device).get_state() : at::Tensor()};
  }
  /// Sets the generators to this state (the device's only where this state holds one). Both take
  /// a CPU byte tensor; a checkpoint read onto a GPU (a resume there) holds the states on the GPU.
  void apply(const torch::Device& device) const {
    at::Generator cpu_gen = at::detail::getDefaultCPUGenerator();  // handles to the global generators
    cpu_gen.set_state(cpu.cpu());
    if (device.is_cuda() && cuda.defined()) {
      at::Generator cuda_gen = at::globalContext().defaultGenerator(device);
      cuda_gen.set_state(cuda.cpu());
    }
  }
};

}  // namespace zoo
