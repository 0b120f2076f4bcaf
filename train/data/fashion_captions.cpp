#include "train/data/fashion_captions.h"

namespace zoo {

const FashionCaptions& fashion_captions() {
  static const FashionCaptions c{
      {"a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a {}.", "this is a {}.",
       "a product photo of a {}.", "a black and white photo of a {}.", "a small photo of a {}.",
       "a low resolution photo of a {}.", "a grayscale image of a {}.", "a cropped photo of a {}.",
       "a {} on a plain background."},
      {"a close-up photo of a {}.", "there is a {} in this picture.", "a good picture of the {}.",
       "a catalogue image showing a {}.", "one {} on a dark background."},
      {
          {"t-shirt", "tee shirt", "top", "tank top"},                      // T-shirt/top
          {"pair of trousers", "trousers", "pair of pants", "pants"},       // Trouser
          {"pullover", "sweater", "jumper", "knitted sweater"},             // Pullover
          {"dress", "gown", "summer dress", "frock"},                       // Dress
          {"coat", "jacket", "winter coat", "overcoat"},                    // Coat
          {"sandal", "pair of sandals", "flip-flop", "open shoe"},          // Sandal
          {"shirt", "button-down shirt", "blouse", "collared shirt"},       // Shirt
          {"sneaker", "running shoe", "trainer", "athletic shoe"},          // Sneaker
          {"bag", "handbag", "purse", "tote bag"},                          // Bag
          {"ankle boot", "boot", "bootie", "short boot"},                   // Ankle boot
      },
      {
          {"tee", "t-shirt top"},
          {"trouser"},
          {"knitted pullover", "knitted jumper"},
          {"summer gown"},
          {"winter jacket"},
          {"sandals", "open sandal"},
          {"collared blouse", "button-down blouse"},
          {"running sneaker", "athletic trainer"},
          {"tote"},
          {"ankle bootie", "short ankle boot"},
      }};
  return c;
}

std::string fill_template(const std::string& tmpl, const std::string& name) {
  auto at = tmpl.find("{}");
  std::string head = tmpl.substr(0, at);
  const bool vowel = !name.empty() && std::string("aeiou").find(name[0]) != std::string::npos;
  if (vowel && head.size() >= 2 && head.compare(head.size() - 2, 2, "a ") == 0 &&
      (head.size() == 2 || head[head.size() - 3] == ' '))
    head.insert(head.size() - 1, "n");
  return head + name + tmpl.substr(at + 2);
}

std::vector<std::string> heldout_prompts(int c) {
  const auto& k = fashion_captions();
  std::vector<std::string> out;
  for (const auto& t : k.heldout_templates) {
    for (const auto& n : k.train_names[static_cast<size_t>(c)]) out.push_back(fill_template(t, n));
    for (const auto& n : k.heldout_names[static_cast<size_t>(c)]) out.push_back(fill_template(t, n));
  }
  for (const auto& t : k.train_templates)
    for (const auto& n : k.heldout_names[static_cast<size_t>(c)]) out.push_back(fill_template(t, n));
  return out;
}

std::vector<std::string> train_prompts(int c) {
  const auto& k = fashion_captions();
  std::vector<std::string> out;
  for (const auto& t : k.train_templates)
    for (const auto& n : k.train_names[static_cast<size_t>(c)]) out.push_back(fill_template(t, n));
  return out;
}

}  // namespace zoo
