#include "infer/png.h"

#include <png.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "common/file_util.h"

namespace streamsink {

namespace {

void append_to_string(png_structp png, png_bytep data, png_size_t n) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<const char*>(data), n);
}

}  // namespace

void write_png_rgb(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb) {
  if (width <= 0 || height <= 0 || rgb.size() != static_cast<size_t>(width) * height * 3)
    fail(path, "write_png_rgb: the image buffer does not match " + std::to_string(width) + "x" + std::to_string(height));
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_write_struct(&png, &info);
    fail(path, "libpng could not start");
  }
  std::string bytes;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    fail(path, "libpng failed to encode the image");
  }
  png_set_write_fn(png, &bytes, append_to_string, nullptr);
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y)
    png_write_row(png, const_cast<png_bytep>(rgb.data() + static_cast<size_t>(y) * width * 3));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  write_file_atomic(path, bytes);
}

std::array<uint8_t, 3> viridis(double x) {
  // matplotlib's viridis sampled at 0, 1/8, ..., 1; linear in between.
  static const uint8_t k[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},  {44, 113, 142}, {33, 144, 141},
                                  {39, 173, 129}, {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
  x = std::clamp(std::isfinite(x) ? x : 0.0, 0.0, 1.0) * 8;
  const int i = std::min(7, static_cast<int>(x));
  const double f = x - i;
  std::array<uint8_t, 3> c{};
  for (int ch = 0; ch < 3; ++ch) c[ch] = static_cast<uint8_t>(std::lround(k[i][ch] + f * (k[i + 1][ch] - k[i][ch])));
  return c;
}

void write_heatmap_png(const std::string& path, const at::Tensor& matrix, const HeatmapOptions& opt) {
  TORCH_CHECK(matrix.dim() == 2, "write_heatmap_png: expected a matrix, got ", matrix.sizes());
  const auto m = matrix.detach().to(at::kCPU).to(at::kDouble).contiguous();  // [R, C]
  const int64_t R = m.size(0), C = m.size(1);
  const double* v = m.data_ptr<double>();
  const double hi = R * C > 0 ? m.max().item<double>() : 1.0;
  auto level = [&](double x) {  // → [0, 1]
    if (!opt.log_scale) return hi > 0 ? x / hi : 0.0;
    const double top = std::log10(std::max(hi, opt.floor * 10)), bottom = std::log10(opt.floor);
    return (std::log10(std::max(x, opt.floor)) - bottom) / (top - bottom);
  };
  const int px = std::max(1, opt.cell_px);
  const int W = static_cast<int>(C) * px, H = static_cast<int>(R) * px;
  std::vector<uint8_t> rgb(static_cast<size_t>(W) * H * 3);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const bool masked = opt.mask_upper && c > r;
      const auto col = masked ? std::array<uint8_t, 3>{235, 235, 235} : viridis(level(v[r * C + c]));
      for (int dy = 0; dy < px; ++dy)
        for (int dx = 0; dx < px; ++dx) {
          const size_t o = ((static_cast<size_t>(r) * px + dy) * W + static_cast<size_t>(c) * px + dx) * 3;
          rgb[o] = col[0], rgb[o + 1] = col[1], rgb[o + 2] = col[2];
        }
    }
  write_png_rgb(path, W, H, rgb);
}

}  // namespace streamsink
