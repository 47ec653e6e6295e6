// The PNG writer round-trips through libpng's reader; the colormap's ends are viridis's.
#include <gtest/gtest.h>
#include <png.h>

#include <cstdio>

#include "infer/png.h"
#include "tests/helpers.h"

using namespace streamsink;

namespace {
// Reads an 8-bit RGB PNG back: {width, height, pixels}.
std::tuple<int, int, std::vector<uint8_t>> read_png(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return {0, 0, {}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_read_info(png, info);
  const int w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  EXPECT_EQ(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y) png_read_row(png, px.data() + static_cast<size_t>(y) * w * 3, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  std::fclose(f);
  return {w, h, px};
}
}  // namespace

TEST(Png, RgbRoundTrips) {
  streamsink::testing::TempDir dir;
  std::vector<uint8_t> rgb(5 * 3 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 7);
  const auto path = dir.str() + "/a.png";
  write_png_rgb(path, 5, 3, rgb);
  auto [w, h, px] = read_png(path);
  EXPECT_EQ(w, 5);
  EXPECT_EQ(h, 3);
  EXPECT_EQ(px, rgb);
}

TEST(Png, HeatmapCellsTakeTheColormap) {
  streamsink::testing::TempDir dir;
  auto m = at::tensor({1.0, 0.0, 0.0001, 0.01}).view({2, 2});  // log scale from 1 down to 1e-4
  HeatmapOptions opt;
  opt.cell_px = 3;
  const auto path = dir.str() + "/h.png";
  write_heatmap_png(path, m, opt);
  auto [w, h, px] = read_png(path);
  ASSERT_EQ(w, 6);
  ASSERT_EQ(h, 6);
  auto at_cell = [&](int r, int c) {
    const size_t o = ((r * 3 + 1) * 6 + c * 3 + 1) * 3;
    return std::array<uint8_t, 3>{px[o], px[o + 1], px[o + 2]};
  };
  EXPECT_EQ(at_cell(0, 0), viridis(1.0));
  EXPECT_EQ(at_cell(1, 0), viridis(0.0));
  EXPECT_EQ(at_cell(1, 1), viridis(0.5));
  EXPECT_EQ(at_cell(0, 1), (std::array<uint8_t, 3>{235, 235, 235}));  // above the diagonal: masked
  EXPECT_EQ(viridis(0.0), (std::array<uint8_t, 3>{68, 1, 84}));
  EXPECT_EQ(viridis(2.0), (std::array<uint8_t, 3>{253, 231, 37}));
}
