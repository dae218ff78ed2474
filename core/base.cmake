# ktl_base: process tuning and file helpers every module uses. No LibTorch.
add_library(ktl_base STATIC
  ${CMAKE_CURRENT_LIST_DIR}/runtime_tuning.cpp
  ${CMAKE_CURRENT_LIST_DIR}/file_util.cpp
  ${CMAKE_CURRENT_LIST_DIR}/atomic_file_writer.cpp)
target_link_libraries(ktl_base PUBLIC Threads::Threads spdlog::spdlog)
target_include_directories(ktl_base PUBLIC ${CMAKE_SOURCE_DIR})

# ktl_config: YAML configs (model, training). No LibTorch.
add_library(ktl_config STATIC
  ${CMAKE_CURRENT_LIST_DIR}/yaml_config.cpp
  ${CMAKE_CURRENT_LIST_DIR}/model_config.cpp)
target_link_libraries(ktl_config PUBLIC ktl_base yaml-cpp)
