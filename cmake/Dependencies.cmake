# Finds LibTorch, yaml-cpp, sentencepiece, nlohmann-json, CLI11, libpng and GoogleTest, and
# gathers them into one interface target `streamsink_deps`.
#
# LibTorch: give -DCMAKE_PREFIX_PATH=<libtorch or torch.utils.cmake_prefix_path>. Without it, the python of the
# virtual environment that scripts/setup.sh makes (STREAMSINK_PYTHON, or python3 on PATH) is asked.

if(NOT STREAMSINK_PYTHON)
  if(DEFINED ENV{STREAMSINK_PYTHON})
    set(STREAMSINK_PYTHON $ENV{STREAMSINK_PYTHON})
  else()
    find_program(STREAMSINK_PYTHON NAMES python3 python)
  endif()
endif()

find_package(Torch QUIET CONFIG)
if(NOT Torch_FOUND AND STREAMSINK_PYTHON)
  execute_process(COMMAND ${STREAMSINK_PYTHON} -c "import torch; print(torch.utils.cmake_prefix_path)"
                  OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _torch_rc ERROR_QUIET)
  if(_torch_rc EQUAL 0 AND _torch_prefix)
    list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
  endif()
endif()

if(NOT Torch_FOUND)
  # A CUDA-enabled LibTorch needs the CUDA toolkit at configure time: say so instead of failing deep inside Caffe2.
  find_program(_nvcc nvcc HINTS /usr/local/cuda/bin ENV CUDA_HOME PATH_SUFFIXES bin)
  if(_nvcc)
    get_filename_component(_cuda_bin ${_nvcc} DIRECTORY)
    get_filename_component(CUDAToolkit_ROOT ${_cuda_bin} DIRECTORY)
    set(CMAKE_CUDA_COMPILER ${_nvcc} CACHE FILEPATH "")
  endif()
  find_package(Torch CONFIG)
  if(NOT Torch_FOUND)
    message(FATAL_ERROR
      "streamsink: LibTorch not found.\n"
      "  Run scripts/setup.sh (it installs the pinned torch wheel into a virtual environment), or pass\n"
      "  -DCMAKE_PREFIX_PATH=/path/to/libtorch (an unzipped LibTorch, CPU or CUDA).\n"
      "  A CUDA LibTorch also needs the CUDA toolkit (nvcc) at configure time: install it (Debian: nvidia-cuda-toolkit,\n"
      "  or NVIDIA's cuda-toolkit) or point CUDAToolkit_ROOT at it.")
  endif()
endif()
message(STATUS "streamsink: LibTorch ${Torch_VERSION} at ${Torch_DIR}")

find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(PNG REQUIRED)
find_package(Threads REQUIRED)
# zlib: data/corpus.cpp reads .gz documents (Debian zlib1g-dev; LibTorch does not export its copy).
find_package(ZLIB REQUIRED)

# sentencepiece has no CMake config: find it by hand (also under a packed prefix on the GPU machine).
find_path(SENTENCEPIECE_INCLUDE_DIR sentencepiece_processor.h)
find_library(SENTENCEPIECE_LIBRARY sentencepiece)
find_library(SENTENCEPIECE_TRAIN_LIBRARY sentencepiece_train)
if(NOT SENTENCEPIECE_INCLUDE_DIR OR NOT SENTENCEPIECE_LIBRARY OR NOT SENTENCEPIECE_TRAIN_LIBRARY)
  message(FATAL_ERROR "streamsink: sentencepiece not found (Debian: apt-get install libsentencepiece-dev); run scripts/setup.sh")
endif()

# A CUDA LibTorch brings the torch_cuda target; device code paths are compiled in only then.
if(TARGET torch_cuda)
  set(STREAMSINK_WITH_CUDA 1)
else()
  set(STREAMSINK_WITH_CUDA 0)
endif()
message(STATUS "streamsink: CUDA support ${STREAMSINK_WITH_CUDA}")

# Gloo's headers (Debian's libgloo-dev; the torch wheel ships c10d's headers but not gloo's, whose code is inside
# libtorch_cpu.so): ProcessGroupGloo.hpp needs them to compile.
find_path(GLOO_INCLUDE_DIR gloo/config.h)
if(NOT GLOO_INCLUDE_DIR)
  message(FATAL_ERROR "streamsink: gloo headers not found (Debian: apt-get install libgloo-dev); run scripts/setup.sh")
endif()

# torch_python is not wanted: TORCH_LIBRARIES from the wheel names only the C++ libraries.
add_library(streamsink_deps INTERFACE)
target_include_directories(streamsink_deps INTERFACE ${SENTENCEPIECE_INCLUDE_DIR} ${GLOO_INCLUDE_DIR})
target_link_libraries(streamsink_deps INTERFACE
  ${TORCH_LIBRARIES} yaml-cpp nlohmann_json::nlohmann_json CLI11::CLI11 PNG::PNG
  ${SENTENCEPIECE_TRAIN_LIBRARY} ${SENTENCEPIECE_LIBRARY} ZLIB::ZLIB Threads::Threads)
# TORCH_CXX_FLAGS carries the C++ ABI flag; it must match LibTorch's.
separate_arguments(_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
target_compile_options(streamsink_deps INTERFACE ${_torch_flags})
target_compile_definitions(streamsink_deps INTERFACE STREAMSINK_WITH_CUDA=${STREAMSINK_WITH_CUDA})
# The torch wheel's libtorch.so exports its own copy of std::filesystem (and libtorch_cpu.so more); were they
# searched before the system libstdc++, our std::filesystem calls would bind to them and crash (seen: remove_all
# jumping to address 0). Listing libstdc++ first among the needed libraries makes the dynamic linker find the
# system's definitions first.
target_link_options(streamsink_deps INTERFACE "LINKER:--push-state,--no-as-needed" "-lstdc++" "LINKER:--pop-state")
# Put LibTorch's library folder in the runtime path so the binary runs without LD_LIBRARY_PATH.
get_filename_component(_torch_lib_dir "${TORCH_LIBRARY}" DIRECTORY)
set(CMAKE_BUILD_RPATH "${_torch_lib_dir}")

if(STREAMSINK_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
