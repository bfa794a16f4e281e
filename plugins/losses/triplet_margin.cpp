// Triplet margin loss with batch-hard mining (Hermans, Beyer & Leibe, "In Defense of the Triplet
// Loss for Person Re-Identification", 2017).
#include <ktf/components.h>
#include <ktf/registry.h>

#include <limits>

#include "losses.h"

namespace ktf::losses {
namespace {

struct TripletMarginOptions {
  double margin = 1.0;                 ///< required gap between positive and negative distances
  std::string distance = "euclidean";  ///< "euclidean", "squared" (euclidean) or "cosine"
  bool soft = false;                   ///< softplus(d_ap - d_an) instead of the hinge (no margin)
};

/// Output: embeddings [N, D]; target: labels [N]. Every example is an anchor; its hardest
/// positive is the farthest other example with its label, its hardest negative the closest
/// example with another label. The loss is the mean over anchors of
/// max(d_ap - d_an + margin, 0) (or softplus(d_ap - d_an) when soft). Anchors without a positive
/// or without a negative in the batch are left out; a batch with no usable anchor is an error.
class TripletMargin : public Loss {
 public:
  explicit TripletMargin(const TripletMarginOptions& o) : o_(o) {
    KTF_CHECK(o.margin >= 0, "margin must be >= 0, got ", o.margin);
    KTF_CHECK(o.distance == "euclidean" || o.distance == "squared" || o.distance == "cosine",
              "distance must be \"euclidean\", \"squared\" or \"cosine\", got \"", o.distance,
              "\"");
  }

  torch::Tensor compute(const torch::Tensor& output, const torch::Tensor& target) override {
    KTF_CHECK(output.dim() == 2, "TripletMargin: expected embeddings [batch, dim], got ",
              output.sizes());
    auto labels = target.dim() == 2 && target.size(1) == 1 ? target.squeeze(1) : target;
    KTF_CHECK(labels.dim() == 1 && labels.size(0) == output.size(0),
              "TripletMargin: expected labels [", output.size(0), "], got ", target.sizes());
    const int64_t n = output.size(0);
    auto d = distances(output);

    auto same = labels.unsqueeze(0) == labels.unsqueeze(1);
    auto eye = torch::eye(n, same.options());
    auto positive = same.logical_and(eye.logical_not());
    auto negative = same.logical_not();

    // Hardest positive: largest distance among positives (distances are >= 0, so masking with 0
    // cannot win unless there is no positive, and those anchors are dropped below).
    auto d_ap = torch::where(positive, d, torch::zeros_like(d)).amax(1);
    // Hardest negative: smallest distance among negatives.
    auto inf = torch::full_like(d, std::numeric_limits<double>::infinity());
    auto d_an = torch::where(negative, d, inf).amin(1);

    auto valid = positive.any(1).logical_and(negative.any(1));
    auto count = valid.sum();
    KTF_CHECK(count.item<int64_t>() > 0,
              "TripletMargin: no anchor in the batch has both a positive (another example with its "
              "label) and a negative (an example with another label); batch-hard mining needs at "
              "least two examples of one class and one of another in every batch, got labels ",
              labels.sizes(), " with ", std::get<0>(at::_unique(labels)).numel(),
              " distinct value(s)");
    auto gap = d_ap - torch::where(valid, d_an, torch::zeros_like(d_an));
    auto per_anchor = o_.soft ? torch::softplus(gap) : torch::relu(gap + o_.margin);
    per_anchor = torch::where(valid, per_anchor, torch::zeros_like(per_anchor));
    return per_anchor.sum() / count.to(per_anchor.scalar_type());
  }

 private:
  torch::Tensor distances(const torch::Tensor& x) const {
    if (o_.distance == "cosine") {
      auto u = torch::nn::functional::normalize(
          x, torch::nn::functional::NormalizeFuncOptions().p(2).dim(1).eps(1e-12));
      return (1 - torch::mm(u, u.t())).clamp_min(0);
    }
    auto sq_norm = x.pow(2).sum(1);
    auto sq = (sq_norm.unsqueeze(0) + sq_norm.unsqueeze(1) - 2 * torch::mm(x, x.t())).clamp_min(0);
    if (o_.distance == "squared") return sq;
    // sqrt has an infinite derivative at 0: take it only where the distance is positive.
    auto positive = sq > 0;
    return torch::where(positive, sq.clamp_min(1e-16).sqrt(), torch::zeros_like(sq));
  }

  TripletMarginOptions o_;
};

}  // namespace

void register_triplet_margin(Registrar& r) {
  r.add(define<Loss, TripletMarginOptions>(
            "ktf.losses.TripletMargin",
            "batch-hard triplet margin loss on embeddings [N, D] with labels [N]")
            .arg("margin", &TripletMarginOptions::margin,
                 "required gap between the hardest negative and hardest positive distances; >= 0 "
                 "(default 1); unused when soft")
            .min(0)
            .arg("distance", &TripletMarginOptions::distance,
                 "pairwise distance: \"euclidean\" (default), \"squared\" euclidean or \"cosine\" "
                 "(1 - cosine similarity)",
                 {"euclidean", "squared", "cosine"})
            .arg("soft", &TripletMarginOptions::soft,
                 "soft margin: softplus(d_ap - d_an) instead of max(d_ap - d_an + margin, 0)")
            .example(Json::object({{"margin", 0.5}}))
            .example_target({})
            .build([](const TripletMarginOptions& o, BuildContext&) {
              return std::make_shared<TripletMargin>(o);
            }));
}

}  // namespace ktf::losses
