# ktl_server_jobs: the /v1/jobs REST routes (cpp-httplib) over ktl_jobs; `ktl serve` links it.
add_library(ktl_server_jobs STATIC ${CMAKE_CURRENT_LIST_DIR}/job_routes.cpp)
target_link_libraries(ktl_server_jobs PUBLIC ktl_jobs PkgConfig::HTTPLIB
  nlohmann_json::nlohmann_json spdlog::spdlog)
target_include_directories(ktl_server_jobs PUBLIC ${CMAKE_SOURCE_DIR})
