#include "train/tasks/task.h"

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

}  // namespace zoo
