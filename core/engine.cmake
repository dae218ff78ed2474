# ktl_engine: the LibTorch half of inference: fused/quantized weights, paged attention over the
# KV pool, the engine thread (LlmEngine) and the Generator API.
add_library(ktl_engine STATIC
  ${CMAKE_CURRENT_LIST_DIR}/packed_linear.cpp
  ${CMAKE_CURRENT_LIST_DIR}/paged_attention.cpp
  ${CMAKE_CURRENT_LIST_DIR}/engine_model.cpp
  ${CMAKE_CURRENT_LIST_DIR}/engine_checkpoint.cpp
  ${CMAKE_CURRENT_LIST_DIR}/llm_engine.cpp
  ${CMAKE_CURRENT_LIST_DIR}/generator.cpp)
target_link_libraries(ktl_engine PUBLIC ktl_infer ktl_model ${TORCH_LIBRARIES}
  PRIVATE nlohmann_json::nlohmann_json)
target_precompile_headers(ktl_engine PRIVATE ${CMAKE_SOURCE_DIR}/core/torch_pch.h)
