# The code plugins share (plugins/common).
routerd_unit_test(test_plugins_common
                  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_plugins_common.c
                  LIBS routerd_plugin_common routerd_plugin_common_curl)

# Shared code is linked in hidden: each plugin still exports one symbol.
find_program(ROUTERD_NM NAMES nm)
if(ROUTERD_NM AND NOT ROUTERD_INSTRUMENTED)
  add_test(NAME test_plugins_exports
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/support/plugin_exports.sh ${ROUTERD_NM}
                   ${ROUTERD_PLUGIN_OUTPUT_DIR})
  set_tests_properties(test_plugins_exports PROPERTIES LABELS unit TIMEOUT 60)
endif()
