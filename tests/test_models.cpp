// Model contracts: shapes, who attends to whom, masks, and agreement with LibTorch's
// own multi-head attention (an independent implementation) on the same weights.
#include "tests/catch.h"

#include <limits>
#include <sstream>

#include "helpers.h"
#include "models/common/attention.h"
#include "models/common/dropout.h"
#include "models/common/norm.h"
#include "models/bert.h"
#include "models/transformer.h"
#include "models/unet.h"
#include "models/vit.h"

namespace {

zoo::ViT tiny_vit(int64_t depth = 2) {
  torch::manual_seed(0);
  auto vit = zoo::ViT(zoo::ViTOptions().patch_size(7).dim(32).depth(depth).heads(4).mlp_dim(64).num_classes(10));
  vit->eval();
  // A zero head would give zero gradients; use a random one for the tests.
  torch::NoGradGuard no_grad;
  vit->head->weight.normal_();
  return vit;
}

}  // namespace

TEST_CASE("ViT shapes: patches, [CLS], logits", "[vit]") {
  auto vit = tiny_vit();
  auto x = torch::rand({5, 1, 28, 28});
  CHECK(vit->num_patches() == 16);
  CHECK(vit->embed(x).sizes() == torch::IntArrayRef({5, 17, 32}));
  CHECK(vit->forward(x).sizes() == torch::IntArrayRef({5, 10}));
  CHECK(vit->position_embedding.sizes() == torch::IntArrayRef({1, 17, 32}));
  CHECK_THROWS(vit->forward(torch::rand({5, 3, 28, 28})));
  auto features = zoo::ViT(zoo::ViTOptions().patch_size(7).dim(32).depth(1).heads(4).num_classes(0));
  CHECK(features->forward(x).sizes() == torch::IntArrayRef({5, 32}));
}

TEST_CASE("ViT: every token attends to every other token", "[vit]") {
  auto vit = tiny_vit(/*depth=*/1);
  auto tokens = vit->embed(torch::rand({1, 1, 28, 28})).detach().requires_grad_(true);  // (1, 17, 32)
  auto out = vit->encode(tokens);
  const auto t = tokens.size(1);
  auto probe = torch::randn({32});  // a plain sum of a layer-normed vector has zero gradient
  for (int64_t i = 0; i < t; ++i) {
    auto grad = torch::autograd::grad({(out.select(1, i) * probe).sum()}, {tokens}, {}, /*retain_graph=*/true)[0];
    auto per_token = grad.abs().sum(-1).squeeze(0);  // (17): influence of each input token on output i
    INFO("output token " << i);
    CHECK((per_token > 0).all().item<bool>());
  }
}

TEST_CASE("ViT: a patch changes the [CLS] output, and the prediction depends on the image", "[vit]") {
  auto vit = tiny_vit();
  auto x = torch::rand({1, 1, 28, 28});
  auto y = x.clone();
  y.index_put_({0, 0, torch::indexing::Slice(21, 28), torch::indexing::Slice(21, 28)}, 0.0);  // last patch
  CHECK_FALSE(torch::allclose(vit->forward(x), vit->forward(y)));
  vit->eval();
  torch::NoGradGuard no_grad;
  auto tokens = vit->encode(vit->embed(x));  // (1, 1 + N, D), [CLS] first
  CHECK_FALSE(torch::allclose(tokens.select(1, 0), vit->encode(vit->embed(y)).select(1, 0)));  // the patch reaches [CLS]
  CHECK(torch::allclose(vit->forward(x), vit->head(tokens.select(1, 0))));  // the head reads [CLS] (Eq. 4)
  CHECK_FALSE(torch::allclose(vit->forward(x), vit->head(tokens.mean(1))));  // not the mean of the tokens
}

TEST_CASE("attention equals LibTorch's multi_head_attention_forward on the same weights", "[attention]") {
  torch::manual_seed(1);
  zoo::MultiheadAttention mha(zoo::MultiheadAttentionOptions(16, 4));
  mha->eval();
  auto x = torch::randn({3, 7, 16});  // (B, T, C)
  auto ours = mha->forward(x);
  namespace F = torch::nn::functional;
  auto xt = x.transpose(0, 1);  // (T, B, C)
  auto ref = std::get<0>(F::multi_head_attention_forward(
      xt, xt, xt,
      F::MultiheadAttentionForwardFuncOptions(16, 4, mha->qkv->weight, mha->qkv->bias, {}, {}, false, 0.0,
                                              mha->proj->weight, mha->proj->bias)
          .training(false)));
  CHECK(torch::allclose(ours, ref.transpose(0, 1), 1e-5, 1e-6));
  {
    // Without gradients (sampling, evaluation) LibTorch 1.x takes its fused inference kernel:
    // the same outputs, also for a non-contiguous input such as the U-Net's (B, HW, C) view.
    torch::NoGradGuard no_grad;
    CHECK(torch::allclose(mha->forward(x), ref.transpose(0, 1), 1e-5, 1e-6));
    auto xnc = x.transpose(1, 2).contiguous().transpose(1, 2);
    REQUIRE_FALSE(xnc.is_contiguous());
    CHECK(torch::allclose(mha->forward(xnc), ref.transpose(0, 1), 1e-5, 1e-6));
    zoo::MultiheadAttention nobias(zoo::MultiheadAttentionOptions(16, 4).bias(false));
    nobias->eval();
    auto y_fused = nobias->forward(x);
    torch::AutoGradMode grad(true);
    CHECK(torch::allclose(y_fused, nobias->forward(x), 1e-5, 1e-6));
  }

  // Cross-attention and a key-padding mask against the same reference.
  auto ctx = torch::randn({3, 5, 16});
  auto pad = torch::zeros({3, 5}, torch::kBool);
  pad.index_put_({1, torch::indexing::Slice(3, 5)}, true);
  auto ours_x = mha->forward_cross(x, ctx, zoo::padding_mask(pad));
  auto ct = ctx.transpose(0, 1);
  auto ref_x = std::get<0>(F::multi_head_attention_forward(
      xt, ct, ct,
      F::MultiheadAttentionForwardFuncOptions(16, 4, mha->qkv->weight, mha->qkv->bias, {}, {}, false, 0.0,
                                              mha->proj->weight, mha->proj->bias)
          .training(false)
          .key_padding_mask(pad)));
  CHECK(torch::allclose(ours_x, ref_x.transpose(0, 1), 1e-5, 1e-6));
}

TEST_CASE("zoo::bmm: torch::bmm's products and gradients, the small ones by a loop over threads", "[attention]") {
  const auto threads = at::get_num_threads();
  torch::set_num_threads(2);  // the products are spread only with more than one thread
  torch::manual_seed(2);
  // Float products of 7 x 5 x 9 and 16 x 32 x 32 (the plain loop, the second at its bound of
  // 2^14), 17 x 32 x 32 and double (torch::bmm's).
  struct Case { torch::Dtype dtype; int64_t p, q, r; };
  for (auto c : {Case{torch::kFloat, 7, 5, 9}, Case{torch::kFloat, 16, 32, 32}, Case{torch::kFloat, 17, 32, 32},
                 Case{torch::kDouble, 7, 5, 9}}) {
    INFO(c.p << " x " << c.q << " x " << c.r);
    const auto dtype = c.dtype;
    auto a = torch::randn({24, c.p, c.q}, dtype).requires_grad_();
    auto b0 = torch::randn({24, c.r, c.q}, dtype).requires_grad_();
    auto b = b0.transpose(1, 2);  // (24, q, r), not contiguous, as attention's K^T
    auto g = torch::randn({24, c.p, c.r}, dtype);
    auto ours = zoo::bmm(a, b);
    auto ref = torch::bmm(a, b);
    CHECK(torch::allclose(ours, ref, 1e-5, 1e-5));
    auto [ga, gb] = std::make_tuple(torch::autograd::grad({ours}, {a, b0}, {g}), torch::autograd::grad({ref}, {a, b0}, {g}));
    CHECK(torch::allclose(ga[0], gb[0], 1e-5, 1e-5));
    CHECK(torch::allclose(ga[1], gb[1], 1e-5, 1e-5));
    // A second derivative through the gradient (create_graph), as for a gradient penalty.
    auto gg = torch::autograd::grad({zoo::bmm(a, b)}, {a}, {g}, /*retain_graph=*/true, /*create_graph=*/true)[0];
    auto gg_ref = torch::autograd::grad({torch::bmm(a, b)}, {a}, {g}, true, true)[0];
    auto h = torch::autograd::grad({gg.pow(2).sum()}, {b0})[0];
    auto h_ref = torch::autograd::grad({gg_ref.pow(2).sum()}, {b0})[0];
    CHECK(torch::allclose(h, h_ref, 1e-4, 1e-4));
  }
  {  // one product (nothing to spread), without gradients, and a shape mismatch
    torch::NoGradGuard no_grad;
    auto a = torch::randn({1, 3, 4}), b = torch::randn({1, 4, 2});
    CHECK(torch::allclose(zoo::bmm(a, b), torch::bmm(a, b)));
    auto a2 = torch::randn({6, 3, 4}), b2 = torch::randn({6, 4, 2});
    CHECK(torch::allclose(zoo::bmm(a2, b2), torch::bmm(a2, b2)));
    CHECK_THROWS(zoo::bmm(a2, torch::randn({6, 5, 2})));
  }
  // Attention through it in training mode (gradients recorded): the reference's values again.
  zoo::MultiheadAttention mha(zoo::MultiheadAttentionOptions(16, 4));
  auto x = torch::randn({3, 7, 16}).requires_grad_();
  auto xt = x.transpose(0, 1);
  namespace F = torch::nn::functional;
  auto ref = std::get<0>(F::multi_head_attention_forward(
      xt, xt, xt,
      F::MultiheadAttentionForwardFuncOptions(16, 4, mha->qkv->weight, mha->qkv->bias, {}, {}, false, 0.0,
                                              mha->proj->weight, mha->proj->bias)
          .training(true)));
  auto ours = mha->forward(x);
  CHECK(torch::allclose(ours, ref.transpose(0, 1), 1e-5, 1e-6));
  auto gx = torch::autograd::grad({ours.sum()}, {x})[0], gx_ref = torch::autograd::grad({ref.sum()}, {x})[0];
  CHECK(torch::allclose(gx, gx_ref, 1e-4, 1e-5));
  torch::set_num_threads(static_cast<int>(threads));
}

TEST_CASE("causal mask: output t does not change when tokens after t change", "[attention]") {
  torch::manual_seed(2);
  zoo::MultiheadAttention mha(zoo::MultiheadAttentionOptions(16, 2));
  mha->eval();
  auto x = torch::randn({2, 6, 16});
  auto mask = zoo::causal_mask(6);
  auto y = x.clone();
  y.narrow(1, 4, 2).normal_();  // change tokens 4 and 5
  auto a = mha->forward(x, mask), b = mha->forward(y, mask);
  CHECK(torch::allclose(a.narrow(1, 0, 4), b.narrow(1, 0, 4)));
  CHECK_FALSE(torch::allclose(a.narrow(1, 4, 2), b.narrow(1, 4, 2)));
  CHECK(mask[0][1].item<float>() == -std::numeric_limits<float>::infinity());
  CHECK(mask[1][0].item<float>() == 0.0f);
}

TEST_CASE("attention refuses a bool mask, which an additive mask's sum would not mask with", "[attention]") {
  auto q = torch::randn({1, 2, 3, 4});
  auto keep = torch::ones({1, 1, 3, 3}, torch::kBool);
  CHECK_THROWS_WITH(zoo::scaled_dot_product_attention(q, q, q, keep, 0.0), Catch::Matchers::Contains("the mask must be additive"));
  CHECK_NOTHROW(zoo::scaled_dot_product_attention(q, q, q, zoo::causal_mask(3), 0.0));
}

TEST_CASE("padding mask: padded keys do not change the real tokens' outputs", "[attention]") {
  torch::manual_seed(3);
  zoo::MultiheadAttention mha(zoo::MultiheadAttentionOptions(16, 2));
  mha->eval();
  auto real = torch::randn({1, 4, 16});
  auto padded = torch::cat({real, torch::randn({1, 3, 16})}, 1);  // 3 junk tokens after the real ones
  auto pad = torch::tensor({false, false, false, false, true, true, true}).view({1, 7});
  auto a = mha->forward(real);
  auto b = mha->forward(padded, zoo::padding_mask(pad)).narrow(1, 0, 4);
  CHECK(torch::allclose(a, b, 1e-5, 1e-6));
}

TEST_CASE("dropout: rate, scale, seeding, gradient and evaluation", "[dropout]") {
  const double p = 0.1;
  auto x = torch::ones({1000, 1000});
  const auto threads = torch::get_num_threads();  // CTest runs each test with OMP_NUM_THREADS=1
  torch::set_num_threads(4);                      // the mask drawn by 4 threads, compared with 1 below
  torch::manual_seed(3);
  auto y = zoo::dropout(x, p, /*training=*/true);
  // Every element is 0 or 1 / (1 - p); the kept fraction is 1 - p within 5 standard deviations
  // (sd = sqrt(p (1 - p) / n) = 3e-4).
  auto kept = y.ne(0);
  CHECK(y.masked_select(kept).sub(1.0 / (1 - p)).abs().max().item<float>() < 1e-6);
  CHECK(std::abs(kept.to(torch::kDouble).mean().item<double>() - (1 - p)) < 5 * 3e-4);
  // Neighbours are independent: the fraction of kept pairs (i, i + 1) is (1 - p)^2.
  auto flat = kept.flatten().to(torch::kDouble);
  auto pairs = (flat.slice(0, 0, -1) * flat.slice(0, 1)).mean().item<double>();
  CHECK(std::abs(pairs - (1 - p) * (1 - p)) < 5 * 6e-4);
  // Set by torch::manual_seed; a second draw differs from the first.
  torch::manual_seed(3);
  CHECK(torch::equal(zoo::dropout(x, p, true), y));
  CHECK_FALSE(torch::equal(zoo::dropout(x, p, true), y));
  // The same mask for any thread count.
  torch::set_num_threads(1);
  torch::manual_seed(3);
  auto one_thread = zoo::dropout(x, p, true);
  torch::set_num_threads(threads);
  CHECK(torch::equal(one_thread, y));
  // The gradient is the mask; evaluation and p = 0 are the identity; p = 1 drops everything.
  auto w = torch::randn({64, 33}, torch::requires_grad());
  auto out = zoo::dropout(w, 0.5, true);
  out.sum().backward();
  CHECK(torch::allclose(out, w.detach() * w.grad()));
  CHECK(w.grad().eq(0).logical_or(w.grad().eq(2)).all().item<bool>());
  CHECK(torch::equal(zoo::dropout(w, 0.5, false), w));
  CHECK(torch::equal(zoo::dropout(w, 0.0, true), w));
  CHECK(zoo::dropout(w, 1.0, true).eq(0).all().item<bool>());
  // Non-contiguous and reduced-precision inputs; the module form follows train() and eval().
  auto t = torch::ones({40, 50}).t();
  CHECK(zoo::dropout(t, 0.5, true).sizes() == t.sizes());
  CHECK(zoo::dropout(torch::ones({100}, torch::kBFloat16), 0.5, true).scalar_type() == torch::kBFloat16);
  zoo::Dropout module(0.5);
  module->train();
  CHECK_FALSE(torch::equal(module->forward(x), x));
  module->eval();
  CHECK(torch::equal(module->forward(x), x));
  CHECK_THROWS(zoo::dropout(x, 1.5, true));
}

TEST_CASE("layer and group norm take bf16 activations with float weights, in float as CUDA autocast runs them", "[norm]") {
  torch::manual_seed(0);
  zoo::LayerNorm ln(torch::nn::LayerNormOptions({8}));
  zoo::GroupNorm gn(torch::nn::GroupNormOptions(2, 4));
  {
    torch::NoGradGuard g;
    for (auto& p : ln->parameters()) p.uniform_(0.5, 1.5);
    for (auto& p : gn->parameters()) p.uniform_(0.5, 1.5);
  }
  // A bf16 input (a linear layer's output under autocast) with float weights: LibTorch 1.13's
  // CPU kernels refuse the mix; these normalize the input cast to float.
  auto x = torch::randn({3, 8}).to(torch::kBFloat16);
  auto y = ln(x);
  CHECK(y.scalar_type() == torch::kFloat);
  CHECK(torch::equal(y, torch::layer_norm(x.to(torch::kFloat), {8}, ln->weight, ln->bias)));
  auto images = torch::randn({2, 4, 3, 3}).to(torch::kBFloat16);
  auto z = gn(images);
  CHECK(z.scalar_type() == torch::kFloat);
  CHECK(torch::equal(z, torch::group_norm(images.to(torch::kFloat), 2, gn->weight, gn->bias)));
  // The same types in and out as torch::nn's, and its numbers, where input and weights agree.
  auto xf = torch::randn({3, 8});
  CHECK(torch::equal(ln(xf), torch::layer_norm(xf, {8}, ln->weight, ln->bias)));
  ln->to(torch::kBFloat16);
  CHECK(ln(x).scalar_type() == torch::kBFloat16);
  // Parameters keep torch::nn's names (checkpoints of either read into the other); a clone is
  // one of these, with its own copy of the weights; printed as zoo's.
  auto file = zoo::test::scratch("norm") + "/plain.pt";
  torch::nn::GroupNorm plain(torch::nn::GroupNormOptions(2, 4));
  torch::save(gn, file);
  torch::load(plain, file);  // zoo's into torch::nn's
  CHECK(torch::equal(plain->weight, gn->weight));
  zoo::GroupNorm back(torch::nn::GroupNormOptions(2, 4));
  torch::save(plain, file);
  torch::load(back, file);  // and back
  CHECK(torch::equal(back->bias, gn->bias));
  auto copy = std::dynamic_pointer_cast<zoo::GroupNormImpl>(gn->clone());
  REQUIRE(copy);
  CHECK(copy->named_parameters().size() == 2);  // registered, not members alone
  CHECK(torch::equal(copy->weight, gn->weight));
  CHECK(copy->weight.data_ptr() != gn->weight.data_ptr());
  CHECK(copy->forward(images).scalar_type() == torch::kFloat);
  std::ostringstream printed;
  printed << *gn;
  CHECK(printed.str().rfind("zoo::GroupNorm(", 0) == 0);
  // The clone's copy constructor names Module where it is a virtual base (LibTorch up to 2.1)
  // and only there, where a non-virtual base would not compile (2.2 on): the trait that tells.
  struct Base {};
  struct Virtual : virtual Base {};
  struct Below : Virtual {};
  struct Plain : Base {};
  STATIC_REQUIRE(zoo::is_virtual_base_v<Base, Virtual>);
  STATIC_REQUIRE(zoo::is_virtual_base_v<Base, Below>);
  STATIC_REQUIRE_FALSE(zoo::is_virtual_base_v<Base, Plain>);
  STATIC_REQUIRE_FALSE(zoo::is_virtual_base_v<Base, int>);
  CHECK(zoo::is_virtual_base_v<torch::nn::Module, torch::nn::GroupNormImpl> ==
        (TORCH_VERSION_MAJOR < 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR < 2)));
}

TEST_CASE("options that would divide by zero, or drop a setting unsaid, throw c10::Error", "[models]") {
  // Where a zero divisor used to end the process (SIGFPE) and a U-Net built without the attention asked for.
  CHECK_THROWS_AS(zoo::ViT(zoo::ViTOptions().patch_size(0)), c10::Error);
  CHECK_THROWS_AS(zoo::ViT(zoo::ViTOptions().heads(0)), c10::Error);
  CHECK_THROWS_AS(zoo::MultiheadAttention(zoo::MultiheadAttentionOptions(32, 0)), c10::Error);
  CHECK_THROWS_AS(zoo::Transformer(zoo::TransformerOptions(10, 10).heads(0)), c10::Error);
  CHECK_THROWS_AS(zoo::BertModel(zoo::BertOptions(50).hidden_size(32).num_heads(0)), c10::Error);
  CHECK_THROWS_WITH(zoo::UNet(zoo::UNetOptions().base_channels(8).channel_mults({1, 2}).attention_resolutions({8})),
                    Catch::Matchers::Contains("UNet: attention resolution 8 is not the side of a level (28 halved up to 1 times)"));
  CHECK_NOTHROW(zoo::UNet(zoo::UNetOptions().base_channels(8).channel_mults({1, 2}).attention_resolutions({14})));
}
