# ktl_jobs: the training-job daemon core (SQLite store, child-process runner, spec validation,
# and the child-side metrics sink). No LibTorch, no HTTP.
add_library(ktl_jobs STATIC
  ${CMAKE_CURRENT_LIST_DIR}/job.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sqlite_db.cpp
  ${CMAKE_CURRENT_LIST_DIR}/job_db.cpp
  ${CMAKE_CURRENT_LIST_DIR}/job_store.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sqlite_metrics_sink.cpp
  ${CMAKE_CURRENT_LIST_DIR}/child_reporting.cpp
  ${CMAKE_CURRENT_LIST_DIR}/job_spec.cpp
  ${CMAKE_CURRENT_LIST_DIR}/child_process.cpp
  ${CMAKE_CURRENT_LIST_DIR}/job_runner.cpp)
target_link_libraries(ktl_jobs PUBLIC ktl_base SQLite::SQLite3 nlohmann_json::nlohmann_json
  spdlog::spdlog Threads::Threads)
target_include_directories(ktl_jobs PUBLIC ${CMAKE_SOURCE_DIR})
