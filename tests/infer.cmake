# Pure C++ inference parts: block manager, scheduler, sampler, detokenizer, stop strings.
ktl_add_test(ktl_infer_tests
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/kv_cache_manager_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/scheduler_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/sampler_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/incremental_detokenizer_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/stop_matcher_test.cpp
  LIBS ktl_infer)
