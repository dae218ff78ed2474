# ktl_safetensors: the safetensors reader (mmap, validated) and atomic streaming writer. No LibTorch.
add_library(ktl_safetensors STATIC
  ${CMAKE_CURRENT_LIST_DIR}/safetensors.cpp)
target_link_libraries(ktl_safetensors PUBLIC ktl_base nlohmann_json::nlohmann_json)
