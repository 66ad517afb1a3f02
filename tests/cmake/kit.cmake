# Deployment kit: checks made before start, supervisors, packaging
# manifests and the operations scripts (tests/kit/).
set(KIT_DIR ${CMAKE_CURRENT_SOURCE_DIR}/kit)
set(KIT_ARGS $<TARGET_FILE:routerd> ${CMAKE_SOURCE_DIR} ${ROUTERD_PLUGIN_OUTPUT_DIR})

add_test(NAME test_kit_verify COMMAND ${KIT_DIR}/test_kit_verify.sh ${KIT_ARGS})
add_test(NAME test_kit_drift COMMAND ${KIT_DIR}/test_kit_drift.sh ${KIT_ARGS})
add_test(NAME test_kit_manpage COMMAND ${KIT_DIR}/test_kit_manpage.sh ${KIT_ARGS})
set_tests_properties(test_kit_verify test_kit_drift test_kit_manpage PROPERTIES LABELS "integration;kit"
                     TIMEOUT 120 SKIP_RETURN_CODE 77)

# The notification protocol against a local AF_UNIX datagram socket.
routerd_unit_test(test_kit_sdnotify SOURCES ${KIT_DIR}/test_kit_sdnotify.c LIBS routerd_core)
add_dependencies(test_kit_sdnotify routerd transport_telegram backend_mock)
set_tests_properties(test_kit_sdnotify PROPERTIES TIMEOUT 120 LABELS "unit;kit")

# systemd-analyze verify / security and the unit's system call filter.
add_test(NAME test_kit_systemd COMMAND ${KIT_DIR}/test_kit_systemd.sh ${KIT_ARGS})
set_tests_properties(test_kit_systemd PROPERTIES LABELS "integration;kit" TIMEOUT 120
                     SKIP_RETURN_CODE 77)
if(ROUTERD_SANITIZE OR ROUTERD_TSAN)
  set_tests_properties(test_kit_systemd PROPERTIES ENVIRONMENT ROUTERD_SANITIZED=1)
endif()

# The fakes as a program for the scripts (smoke, soak, supervisors).
add_executable(routerd_fakes ${KIT_DIR}/fakes_main.c)
target_link_libraries(routerd_fakes PRIVATE routerd_test_support)
set(KIT_FAKES $<TARGET_FILE:routerd_fakes>)

# runit (runsv with packaging/runit) and the Procfile worker line.
add_test(NAME test_kit_supervisors
         COMMAND ${KIT_DIR}/test_kit_supervisors.sh ${KIT_ARGS} ${KIT_FAKES})
set_tests_properties(test_kit_supervisors PROPERTIES LABELS "integration;kit" TIMEOUT 300)
add_dependencies(routerd_fakes routerd transport_telegram backend_mock backend_a2a
                 sink_prometheus sink_jsonlog sink_otlp)

# packaging/kubernetes: structure, generated files, drift against conf.d/.
add_test(NAME test_kit_k8s COMMAND ${KIT_DIR}/test_kit_k8s.sh ${KIT_ARGS})
set_tests_properties(test_kit_k8s PROPERTIES LABELS "integration;kit" TIMEOUT 300)

# Series the alerts and dashboard need exist at start; queue wait; the
# Alertmanager example (amtool).
add_test(NAME test_kit_metrics COMMAND ${KIT_DIR}/test_kit_metrics.sh ${KIT_ARGS} ${KIT_FAKES})
set_tests_properties(test_kit_metrics PROPERTIES LABELS "integration;kit" TIMEOUT 180)

# scripts/smoke.sh against the fakes (pass, and the misses it must catch).
add_test(NAME test_kit_smoke COMMAND ${KIT_DIR}/test_kit_smoke.sh ${KIT_ARGS} ${KIT_FAKES})
set_tests_properties(test_kit_smoke PROPERTIES LABELS "integration;kit" TIMEOUT 240)

# scripts/soak.sh (a few seconds) and scripts/restore-drill.sh (timed).
add_test(NAME test_kit_ops COMMAND ${KIT_DIR}/test_kit_ops.sh ${KIT_ARGS} ${KIT_FAKES})
set_tests_properties(test_kit_ops PROPERTIES LABELS "integration;kit" TIMEOUT 240)

# The telegram transport, the a2a backend and the OTLP sink over TLS: ca_file,
# and TLS sessions shared by handles (TLS fronts in Python before the fakes).
add_test(NAME test_tls
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_tls.sh ${KIT_ARGS} ${KIT_FAKES})
set_tests_properties(test_tls PROPERTIES LABELS "integration;telegram;a2a;sinks" TIMEOUT 120
                     SKIP_RETURN_CODE 77)
