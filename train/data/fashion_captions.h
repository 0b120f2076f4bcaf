// Captions for Fashion-MNIST images, for CLIP: a template ("a photo of a {}.") filled with a
// name of the image's class ("sneaker", "running shoe", ...). Some templates and some names
// are held out of training: a prompt is "held out" when its template or its name is, and
// zero-shot evaluation uses only such prompts, which the model never saw. Every held-out name
// is made of words that training captions use, so it can be understood, but never in that
// combination ("running sneaker": "running shoe" and "sneaker" are trained).
#pragma once

#include <string>
#include <vector>

namespace zoo {

struct FashionCaptions {
  std::vector<std::string> train_templates, heldout_templates;  // each with one "{}"
  std::vector<std::vector<std::string>> train_names, heldout_names;  // per class, 10 classes
};

const FashionCaptions& fashion_captions();

/// The template with "{}" replaced by `name`; "a" becomes "an" before a vowel.
std::string fill_template(const std::string& tmpl, const std::string& name);

/// The prompts of class c that training never shows: held-out template x any name, and
/// training template x held-out name.
std::vector<std::string> heldout_prompts(int c);
/// The prompts training draws from for class c: training template x training name.
std::vector<std::string> train_prompts(int c);

}  // namespace zoo
