# The plugin test kit on plugins loaded by path: a probe backend built here,
# the mock backend, the inbound A2A server and the broken plugins of the
# loader tests.
add_library(kit_backend_probe MODULE ${CMAKE_CURRENT_SOURCE_DIR}/unit/kit/backend_probe.c)
target_include_directories(kit_backend_probe PRIVATE ${CMAKE_SOURCE_DIR}/include)
target_link_libraries(kit_backend_probe PRIVATE Threads::Threads)
set_target_properties(kit_backend_probe PROPERTIES PREFIX "" OUTPUT_NAME backend_probe
                      LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/kit_plugins
                      C_VISIBILITY_PRESET hidden)
routerd_unit_test(test_plugintest SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_plugintest.c
                  LIBS routerd_plugintest)
target_compile_definitions(test_plugintest PRIVATE
  PROBE_SO="${CMAKE_BINARY_DIR}/kit_plugins/backend_probe.so"
  MOCK_SO="${ROUTERD_PLUGIN_OUTPUT_DIR}/backend_mock.so"
  INBOUND_SO="${ROUTERD_PLUGIN_OUTPUT_DIR}/inbound_a2a.so"
  BAD_DIR="${CMAKE_BINARY_DIR}/bad_plugins")
add_dependencies(test_plugintest kit_backend_probe backend_mock inbound_a2a bad_no_handle bad_wrong_major
                 bad_inbound_no_intercept bad_inbound_old_ops)

# plugin_dir as a list of folders: a plugin loaded by name from the second.
add_test(NAME test_core_plugin_dirs
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_core_plugin_dirs.sh
                 $<TARGET_FILE:routerd> ${ROUTERD_PLUGIN_OUTPUT_DIR}
                 $<TARGET_FILE:kit_backend_probe>)
set_tests_properties(test_core_plugin_dirs PROPERTIES LABELS integration TIMEOUT 60)

# docs/plugin-guide.md as written, against routerd installed in a temporary
# prefix (find_package and pkg-config builds, the kit's test, a reply).
if(NOT ROUTERD_INSTRUMENTED)
  add_test(NAME kit_plugin_guide
           COMMAND ${CMAKE_SOURCE_DIR}/tests/packaging/plugin_guide.sh ${CMAKE_BINARY_DIR}
                   ${CMAKE_SOURCE_DIR})
  set_tests_properties(kit_plugin_guide PROPERTIES LABELS packaging TIMEOUT 300)
endif()
