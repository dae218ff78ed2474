# ktl_server_protocol: the OpenAI wire format, auth, static-path and model-path confinement,
# metrics rendering. No engine, no HTTP library: unit-tested on its own.
add_library(ktl_server_protocol STATIC
  ${CMAKE_CURRENT_LIST_DIR}/api_error.cpp
  ${CMAKE_CURRENT_LIST_DIR}/openai_protocol.cpp
  ${CMAKE_CURRENT_LIST_DIR}/auth.cpp
  ${CMAKE_CURRENT_LIST_DIR}/static_files.cpp
  ${CMAKE_CURRENT_LIST_DIR}/allowed_paths.cpp
  ${CMAKE_CURRENT_LIST_DIR}/server_metrics.cpp)
target_link_libraries(ktl_server_protocol PUBLIC ktl_base nlohmann_json::nlohmann_json)
target_include_directories(ktl_server_protocol PUBLIC ${CMAKE_SOURCE_DIR})

# ktl_server: `ktl serve` (cpp-httplib). Engine, jobs and the jobs routes are linked when
# their targets exist, so this builds before they do.
add_library(ktl_server STATIC
  ${CMAKE_CURRENT_LIST_DIR}/model_manager.cpp
  ${CMAKE_CURRENT_LIST_DIR}/server_context.cpp
  ${CMAKE_CURRENT_LIST_DIR}/generation_session.cpp
  ${CMAKE_CURRENT_LIST_DIR}/openai_routes.cpp
  ${CMAKE_CURRENT_LIST_DIR}/serving_routes.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jobs_integration.cpp
  ${CMAKE_CURRENT_LIST_DIR}/http_server.cpp)
target_link_libraries(ktl_server PUBLIC ktl_server_protocol ktl_base PkgConfig::HTTPLIB
  nlohmann_json::nlohmann_json spdlog::spdlog Threads::Threads)
if(TARGET ktl_engine)
  target_link_libraries(ktl_server PUBLIC ktl_engine)
  target_compile_definitions(ktl_server PRIVATE KTL_HAVE_ENGINE=1)
elseif(TARGET ktl_tokenizer)
  target_link_libraries(ktl_server PUBLIC ktl_tokenizer)
endif()
if(TARGET ktl_jobs)
  target_link_libraries(ktl_server PUBLIC ktl_jobs)
  target_compile_definitions(ktl_server PRIVATE KTL_HAVE_JOBS=1)
endif()
if(TARGET ktl_server_jobs)
  target_link_libraries(ktl_server PUBLIC ktl_server_jobs)
  target_compile_definitions(ktl_server PRIVATE KTL_HAVE_SERVER_JOBS=1)
endif()

# A load client independent of ktl (bench/load_bench.cpp).
if(EXISTS ${CMAKE_SOURCE_DIR}/bench/load_bench.cpp)
  add_executable(ktl_load_bench ${CMAKE_SOURCE_DIR}/bench/load_bench.cpp)
  target_link_libraries(ktl_load_bench PRIVATE PkgConfig::HTTPLIB nlohmann_json::nlohmann_json
    Threads::Threads)
  set_target_properties(ktl_load_bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
endif()
