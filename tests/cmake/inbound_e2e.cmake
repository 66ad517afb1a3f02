# End-to-end tests of the inbound A2A server (plugins/inbound_a2a, docs/inbound.md):
# the real binary with the telegram transport against the fake Bot API, a
# person answering there, and tests/interop/inbound_client.mjs on the
# official @a2a-js/sdk client as the calling agent (npm ci into the build
# tree once; without node, npm or the registry the tests exit 77, skipped).
set(INBOUND_E2E_UTIL ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_inbound_util.c)
set(INBOUND_E2E_SRC ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_inbound_e2e.c ${INBOUND_E2E_UTIL})
set(INBOUND_HA_SRC ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_inbound_ha.c ${INBOUND_E2E_UTIL})
if(TARGET inbound_a2a)
  routerd_integration_test(test_inbound_e2e SOURCES ${INBOUND_E2E_SRC} TIMEOUT 600)
  add_dependencies(test_inbound_e2e inbound_a2a transport_telegram backend_mock sink_prometheus
                   sink_jsonlog)
  set_tests_properties(test_inbound_e2e PROPERTIES LABELS "integration;interop;inbound"
                       SKIP_RETURN_CODE 77)
  # Two replicas on a PostgreSQL server that tests/support/pg.sh starts
  # (skipped, exit 77, without the server binaries).
  if(TARGET store_postgresql)
    add_executable(test_inbound_ha ${INBOUND_HA_SRC})
    target_link_libraries(test_inbound_ha PRIVATE routerd_test_support)
    add_dependencies(test_inbound_ha routerd store_postgresql inbound_a2a transport_telegram
                     backend_mock sink_prometheus)
    add_test(NAME test_inbound_ha
             COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/support/pg.sh run $<TARGET_FILE:test_inbound_ha>)
    set_tests_properties(test_inbound_ha PROPERTIES LABELS "integration;interop;inbound;postgresql"
                         SKIP_RETURN_CODE 77 TIMEOUT 600
                         ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0")
  endif()
else()
  # Without the plugin the tests are built (so they keep compiling) but not run.
  add_executable(test_inbound_e2e ${INBOUND_E2E_SRC})
  target_link_libraries(test_inbound_e2e PRIVATE routerd_test_support)
endif()
