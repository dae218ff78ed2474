# ktl_model: the LibTorch model, its ops, devices and checkpoints.
add_library(ktl_model STATIC
  ${CMAKE_CURRENT_LIST_DIR}/device.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops.cpp
  ${CMAKE_CURRENT_LIST_DIR}/model.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint.cpp)
target_link_libraries(ktl_model PUBLIC ${TORCH_LIBRARIES} ktl_config ktl_base ktl_safetensors ktl_tokenizer
  PRIVATE nlohmann_json::nlohmann_json)
target_precompile_headers(ktl_model PRIVATE ${CMAKE_SOURCE_DIR}/core/torch_pch.h)
