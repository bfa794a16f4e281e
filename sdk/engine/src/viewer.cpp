#include "ktf/viewer.h"

#include <cmath>
#include <string>
#include <vector>

#include "ktf/error.h"
#include "ktf/image.h"

namespace ktf {

namespace {

// 3x5 bitmap digits, one row per string, '#' = ink.
const char* const kDigits[10][5] = {
    {"###", "#.#", "#.#", "#.#", "###"}, {".#.", "##.", ".#.", ".#.", "###"},
    {"###", "..#", "###", "#..", "###"}, {"###", "..#", "###", "..#", "###"},
    {"#.#", "#.#", "###", "..#", "..#"}, {"###", "#..", "###", "..#", "###"},
    {"###", "#..", "###", "#.#", "###"}, {"###", "..#", "..#", "..#", "..#"},
    {"###", "#.#", "###", "#.#", "###"}, {"###", "#.#", "###", "..#", "###"}};
const char* const kMinus[5] = {"...", "...", "###", "...", "..."};

constexpr int64_t kScale = 2;             // font pixel size
constexpr int64_t kBar = 5 * kScale + 4;  // label bar height
constexpr int64_t kGap = 2;               // space between cells

/// Collects the first `n` examples of `stream` (epoch 0) as inputs and targets.
std::pair<torch::Tensor, torch::Tensor> take(BatchStream& stream, int64_t n) {
  std::vector<torch::Tensor> xs, ys;
  int64_t have = 0;
  stream.start_epoch(0);
  while (have < n) {
    auto b = stream.next();
    if (!b) break;
    xs.push_back(b->input.to(torch::kCPU));
    ys.push_back(b->target.to(torch::kCPU));
    have += b->input.size(0);
  }
  KTF_CHECK(have > 0, "viewer: the training data is empty");
  auto x = torch::cat(xs).slice(0, 0, n), y = torch::cat(ys).slice(0, 0, n);
  stream.start_epoch(0);  // stops a prefetch thread early
  return {x, y};
}

/// [N, C, H, W] (any dtype) -> uint8 [N, H, W, 3].
torch::Tensor to_rgb(torch::Tensor x) {
  if (x.dim() == 3) x = x.unsqueeze(1);
  KTF_CHECK(x.dim() == 4, "viewer: inputs must be images [C, H, W], got one example of shape ",
            x.sizes().slice(1));
  if (x.size(1) == 1 || x.size(1) == 2) x = x.narrow(1, 0, 1).expand({-1, 3, -1, -1});
  if (x.size(1) > 3) x = x.narrow(1, 0, 3);
  KTF_CHECK(x.size(1) == 3, "viewer: cannot show images with ", x.size(1), " channels");
  if (x.scalar_type() != torch::kUInt8) {
    auto f = x.to(torch::kFloat32);
    auto flat = f.reshape({f.size(0), -1});
    auto lo = std::get<0>(flat.min(1)).view({-1, 1, 1, 1});
    auto hi = std::get<0>(flat.max(1)).view({-1, 1, 1, 1});
    x = ((f - lo) / (hi - lo).clamp_min(1e-12) * 255).round().clamp(0, 255).to(torch::kUInt8);
  }
  return x.permute({0, 2, 3, 1}).contiguous();
}

void draw_label(torch::Tensor bar, int64_t label) {
  // Class colour: hue from the label.
  double hue = std::fmod(static_cast<double>(label < 0 ? -label : label) * 0.618034, 1.0) * 6;
  int sector = static_cast<int>(hue);
  double f = hue - sector;
  double rgb[6][3] = {{1, f, 0}, {1 - f, 1, 0}, {0, 1, f}, {0, 1 - f, 1}, {f, 0, 1}, {1, 0, 1 - f}};
  for (int c = 0; c < 3; ++c)
    bar.select(2, c).fill_(static_cast<int64_t>(40 + 110 * rgb[sector][c]));
  std::string text = std::to_string(label);
  int64_t x0 = 2;
  auto* p = bar.data_ptr<uint8_t>();
  int64_t w = bar.size(1);
  for (char ch : text) {
    const char* const* glyph = ch == '-' ? kMinus : kDigits[ch - '0'];
    for (int64_t r = 0; r < 5; ++r)
      for (int64_t c = 0; c < 3; ++c)
        if (glyph[r][c] == '#')
          for (int64_t dy = 0; dy < kScale; ++dy)
            for (int64_t dx = 0; dx < kScale; ++dx) {
              int64_t yy = 2 + r * kScale + dy, xx = x0 + c * kScale + dx;
              if (xx < w)
                for (int ch3 = 0; ch3 < 3; ++ch3) p[(yy * w + xx) * 3 + ch3] = 255;
            }
    x0 += 4 * kScale;
  }
}

}  // namespace

torch::Tensor render_contact_sheet(Dataset& dataset, int64_t n, bool augmented) {
  KTF_CHECK(n >= 1, "viewer: the number of examples must be >= 1, got ", n);
  auto* aug = dynamic_cast<Augmentable*>(&dataset);
  std::shared_ptr<BatchStream> raw_stream = aug ? aug->train_unaugmented() : dataset.train();
  auto [raw_x, labels] = take(*raw_stream, n);
  raw_stream.reset();
  std::vector<torch::Tensor> rows_of_images{to_rgb(raw_x)};
  if (augmented) {
    auto stream = dataset.train();
    rows_of_images.push_back(to_rgb(take(*stream, n).first));
  }
  n = raw_x.size(0);
  int64_t h = rows_of_images[0].size(1), w = rows_of_images[0].size(2);
  for (const auto& imgs : rows_of_images)
    KTF_CHECK(imgs.size(1) == h && imgs.size(2) == w,
              "viewer: augmented images have a different size than the raw ones");
  int64_t cell_w = std::max<int64_t>(w, 4 * kScale * 3 + 4), cell_h = h + kBar;
  int64_t cols = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(n))));
  int64_t grid_rows = (n + cols - 1) / cols;
  int64_t per_row = static_cast<int64_t>(rows_of_images.size());
  int64_t sheet_h = grid_rows * per_row * (cell_h + kGap) + kGap;
  int64_t sheet_w = cols * (cell_w + kGap) + kGap;
  auto sheet = torch::full({sheet_h, sheet_w, 3}, 24, torch::kUInt8);
  auto target = labels.reshape({labels.size(0), -1});
  for (int64_t i = 0; i < n; ++i) {
    int64_t gr = i / cols, gc = i % cols;
    int64_t label = target.size(1) ? target[i][0].item().toLong() : 0;
    for (int64_t k = 0; k < per_row; ++k) {
      int64_t top = kGap + (gr * per_row + k) * (cell_h + kGap), left = kGap + gc * (cell_w + kGap);
      sheet.narrow(0, top, h).narrow(1, left, w).copy_(rows_of_images[k][i]);
      auto bar = torch::empty({kBar, cell_w, 3}, torch::kUInt8);
      draw_label(bar, label);
      sheet.narrow(0, top + h, kBar).narrow(1, left, cell_w).copy_(bar);
    }
  }
  return sheet;
}

void write_contact_sheet(Dataset& dataset, const std::string& png_path, int64_t n, bool augmented) {
  write_png(png_path, render_contact_sheet(dataset, n, augmented));
}

}  // namespace ktf
