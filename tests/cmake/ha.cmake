# High availability on a shared PostgreSQL store: replicas of the real
# binary against the fake Bot API and a PostgreSQL server that
# tests/support/pg.sh starts for the test (skipped, exit 77, without the
# server binaries).
if(TARGET store_postgresql)
  add_executable(test_ha_failover integration/test_ha_failover.c)
  target_link_libraries(test_ha_failover PRIVATE routerd_test_support)
  add_dependencies(test_ha_failover routerd store_postgresql transport_telegram backend_mock
                   sink_prometheus)
  add_test(NAME test_ha_failover
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/support/pg.sh run $<TARGET_FILE:test_ha_failover>)
  set_tests_properties(test_ha_failover PROPERTIES LABELS "integration;postgresql"
                       SKIP_RETURN_CODE 77 TIMEOUT 600
                       ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0")

  # Webhook scale-out: three replicas take webhooks, chats claimed per replica.
  add_executable(test_ha_webhook integration/test_ha_webhook.c)
  target_link_libraries(test_ha_webhook PRIVATE routerd_test_support)
  add_dependencies(test_ha_webhook routerd store_postgresql transport_telegram backend_mock
                   sink_prometheus)
  add_test(NAME test_ha_webhook
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/support/pg.sh run $<TARGET_FILE:test_ha_webhook>)
  set_tests_properties(test_ha_webhook PROPERTIES LABELS "integration;postgresql"
                       SKIP_RETURN_CODE 77 TIMEOUT 600
                       ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0")
endif()

# Store keys through the binary: secret store_url, missing url, file modes.
routerd_integration_test(test_store_cli SOURCES integration/test_store_cli.c TIMEOUT 120)
add_dependencies(test_store_cli transport_console backend_mock)
