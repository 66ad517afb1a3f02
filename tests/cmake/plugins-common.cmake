# The code plugins share (plugins/common).
routerd_unit_test(test_plugins_common
                  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_plugins_common.c
                  LIBS routerd_plugin_common routerd_plugin_common_curl)
