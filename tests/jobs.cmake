# Training-job daemon core: store, metrics sink, spec validation, runner (fake children).
ktl_add_test(ktl_jobs_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/job_store_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/sqlite_metrics_sink_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/job_spec_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/job_runner_test.cpp
  LIBS ktl_jobs)
if(TARGET ktl_server_jobs)
  ktl_add_test(ktl_job_routes_tests
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/job_routes_test.cpp
    LIBS ktl_server_jobs)
endif()
