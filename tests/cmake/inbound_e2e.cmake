# End-to-end tests of the inbound A2A server (plugins/inbound_a2a, docs/inbound.md):
# the real binary with the telegram transport against the fake Bot API, a
# person answering there, and tests/interop/inbound_client.mjs on the
# official @a2a-js/sdk client as the calling agent (npm ci into the build
# tree once; without node, npm or the registry the test exits 77, skipped).
set(INBOUND_E2E_SRC ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_inbound_e2e.c
                    ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_inbound_util.c)
if(TARGET inbound_a2a)
  routerd_integration_test(test_inbound_e2e SOURCES ${INBOUND_E2E_SRC} TIMEOUT 600)
  add_dependencies(test_inbound_e2e inbound_a2a transport_telegram backend_mock sink_prometheus)
  set_tests_properties(test_inbound_e2e PROPERTIES LABELS "integration;interop;inbound"
                       SKIP_RETURN_CODE 77)
else()
  # Without the plugin the test is built (so it keeps compiling) but not run.
  add_executable(test_inbound_e2e ${INBOUND_E2E_SRC})
  target_link_libraries(test_inbound_e2e PRIVATE routerd_test_support)
endif()
