#include "train/tasks/task.h"

#include <new>

namespace zoo {

TaskInfo vit_fashion_mnist_task();
TaskInfo vae_fashion_mnist_task();
TaskInfo gan_fashion_mnist_task();
TaskInfo ddpm_fashion_mnist_task();
TaskInfo transformer_g2p_task();
TaskInfo bert_mlm_task();
TaskInfo bert_pos_task();
TaskInfo bert_spam_task();
TaskInfo clip_fashion_mnist_task();

const std::vector<TaskInfo>& task_registry() {
  static const std::vector<TaskInfo> tasks{vit_fashion_mnist_task(), vae_fashion_mnist_task(), gan_fashion_mnist_task(),
                                              ddpm_fashion_mnist_task(), transformer_g2p_task(), bert_mlm_task(),
                                              bert_pos_task(),           bert_spam_task(),           clip_fashion_mnist_task()};
  return tasks;
}

const TaskInfo& find_task(const std::string& name) {
  for (const auto& t : task_registry())
    if (t.name == name) return t;
  std::string known;
  for (const auto& t : task_registry()) known += (known.empty() ? "" : ", ") + t.name;
  throw UsageError("unknown task '" + name + "' (known: " + known + ")");
}

namespace {

bool out_of_memory(const std::string& what) {
  return what.find("can't allocate memory") != std::string::npos || what.find("out of memory") != std::string::npos;
}

[[noreturn]] void too_big(const Config& cfg, const TaskContext& ctx) {
  std::string sizes;
  for (const auto& spec : cfg.schema().keys())  // the integer model.* keys, and BERT's named size
    if (spec.key.rfind("model.", 0) == 0 && (spec.kind == Kind::kInt || spec.key == "model.size"))
      sizes += (sizes.empty() ? "" : ", ") + spec.key + "=" + show_value(cfg.value(spec.key));
  throw UsageError("the " + cfg.task() + " model does not fit in " + ctx.device.str() + " memory (" + sizes +
                   "): make it smaller");
}

}  // namespace

std::unique_ptr<Task> make_task(const Config& cfg, const TaskContext& ctx) {
  try {
    return find_task(cfg.task()).make(cfg, ctx);
  } catch (const std::bad_alloc&) {
    too_big(cfg, ctx);
  } catch (const c10::Error& e) {
    if (!out_of_memory(e.what())) throw;
    too_big(cfg, ctx);
  }
}

}  // namespace zoo
