# Unit tests of the server's pure parts (no engine, no sockets).
ktl_add_test(ktl_server_unit_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/openai_protocol_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/server_security_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/server_metrics_test.cpp
  LIBS ktl_server_protocol)

# ModelManager with a test-double Engine (links ktl_server, hence the engine library).
ktl_add_test(ktl_server_model_manager_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/model_manager_test.cpp
  LIBS ktl_server)

# `ktl serve` end to end (the real binary and a tiny model built by the test with the CLI).
# One ctest entry (not one per case): the suite shares one server and model (~15 s).
add_executable(ktl_server_integration_tests ${CMAKE_CURRENT_LIST_DIR}/server_integration_test.cpp)
target_link_libraries(ktl_server_integration_tests PRIVATE PkgConfig::HTTPLIB
  nlohmann_json::nlohmann_json GTest::gtest GTest::gtest_main Threads::Threads)
target_compile_definitions(ktl_server_integration_tests PRIVATE
  KTL_SOURCE_DIR="${CMAKE_SOURCE_DIR}" KTL_BINARY_DIR="${CMAKE_BINARY_DIR}")
add_dependencies(ktl_server_integration_tests ktl)
add_test(NAME server_integration COMMAND ktl_server_integration_tests)
set(KTL_SERVER_IT_ENV "KTL_BIN=${CMAKE_BINARY_DIR}/ktl" "OMP_WAIT_POLICY=PASSIVE")
if(TARGET ktl_spm)
  list(APPEND KTL_SERVER_IT_ENV "KTL_SPM_LIB=$<TARGET_FILE:ktl_spm>")
endif()
set_tests_properties(server_integration PROPERTIES TIMEOUT 600 ENVIRONMENT "${KTL_SERVER_IT_ENV}")

# The official `openai` npm client (tests/node, installed by `make test-deps`); 77 = skipped.
find_program(KTL_NODE_FOR_SERVER node)
if(KTL_NODE_FOR_SERVER)
  add_test(NAME server_openai_node_client
    COMMAND ${KTL_NODE_FOR_SERVER} ${CMAKE_CURRENT_LIST_DIR}/node/openai_client.test.mjs)
  set(KTL_NODE_SERVER_ENV "KTL_BIN=${CMAKE_BINARY_DIR}/ktl" "OMP_WAIT_POLICY=PASSIVE")
  if(TARGET ktl_spm)
    list(APPEND KTL_NODE_SERVER_ENV "KTL_SPM_LIB=$<TARGET_FILE:ktl_spm>")
  endif()
  set_tests_properties(server_openai_node_client PROPERTIES
    SKIP_RETURN_CODE 77 TIMEOUT 300 ENVIRONMENT "${KTL_NODE_SERVER_ENV}")
endif()
