# ktl_infer: the inference engine's pure C++ parts (block manager, scheduler, sampler,
# detokenisation, stop strings). No LibTorch, so its tests build in seconds.
add_library(ktl_infer STATIC
  ${CMAKE_CURRENT_LIST_DIR}/kv_cache_manager.cpp
  ${CMAKE_CURRENT_LIST_DIR}/scheduler.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sampler.cpp
  ${CMAKE_CURRENT_LIST_DIR}/incremental_detokenizer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/stop_matcher.cpp)
target_include_directories(ktl_infer PUBLIC ${CMAKE_SOURCE_DIR})
