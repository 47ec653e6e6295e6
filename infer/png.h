// A small PNG writer (libpng) and heatmaps with a perceptually uniform colormap (viridis), for attention maps.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace streamsink {

// 8-bit RGB, rows top to bottom: rgb.size() == width·height·3. Written atomically; Error naming the path.
void write_png_rgb(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb);

// Viridis (matplotlib's perceptually uniform, colour-blind-safe map), x clamped to [0, 1].
std::array<uint8_t, 3> viridis(double x);

struct HeatmapOptions {
  int cell_px = 4;         // each matrix cell becomes a cell_px × cell_px square
  bool log_scale = true;   // colour by log10(value), from max(value) down to floor
  double floor = 1e-4;     // log scale: values below are drawn as the floor
  bool mask_upper = true;  // cells above the diagonal (causally masked) drawn light grey
};
// matrix [R, C] (any float dtype, any device) → a PNG heatmap, row 0 at the top.
void write_heatmap_png(const std::string& path, const at::Tensor& matrix, const HeatmapOptions& opt = {});

}  // namespace streamsink
