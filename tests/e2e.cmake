# Browser tests of the dashboard (web/): Debian's headless chromium driven by playwright-core
# (npm, tests/e2e/node_modules, installed by `make test-deps`). Exit code 77 = skipped (no
# chromium or no node modules). Screenshots land in ${CMAKE_BINARY_DIR}/e2e.
find_program(KTL_NODE_EXECUTABLE node)
if(KTL_NODE_EXECUTABLE)
  set(KTL_E2E_ENV
    "KTL_BIN=${CMAKE_BINARY_DIR}/ktl"
    "KTL_E2E_ARTIFACTS=${CMAKE_BINARY_DIR}/e2e"
    "OMP_WAIT_POLICY=PASSIVE")
  if(TARGET ktl_spm)
    list(APPEND KTL_E2E_ENV "KTL_SPM_LIB=$<TARGET_FILE:ktl_spm>")
  endif()

  # The real thing: `ktl serve` started by the test, a training job submitted from the form.
  add_test(NAME dashboard_e2e
    COMMAND ${KTL_NODE_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/e2e/dashboard.test.mjs)
  # The page alone against tests/e2e/mock_server.mjs (a fake API): fast, no model needed.
  add_test(NAME dashboard_page_mock
    COMMAND ${KTL_NODE_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/e2e/mock_page.test.mjs)

  # The browser-free modules (SSE parser, job-spec builder, wire formats) under plain Node.
  add_test(NAME dashboard_web_units
    COMMAND ${KTL_NODE_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/e2e/web_units.test.mjs)

  # PROCESSORS 2: the browser plus a training child use both cores of a small machine.
  set_tests_properties(dashboard_e2e PROPERTIES
    SKIP_RETURN_CODE 77 TIMEOUT 900 PROCESSORS 2 ENVIRONMENT "${KTL_E2E_ENV}")
  set_tests_properties(dashboard_web_units PROPERTIES TIMEOUT 60)
  set_tests_properties(dashboard_page_mock PROPERTIES
    SKIP_RETURN_CODE 77 TIMEOUT 300 ENVIRONMENT "${KTL_E2E_ENV}")
endif()
