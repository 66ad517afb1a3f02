# Build and release kit: install layouts, the README's install recipe, the
# .deb (lintian), the OCI image, its SBOM, reproducibility and the
# fresh-machine install. Label: packaging (tests/packaging/).
set(KIT_TESTS ${CMAKE_SOURCE_DIR}/tests/packaging)
add_test(NAME kit_install COMMAND ${KIT_TESTS}/install.sh ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR})
set_tests_properties(kit_install PROPERTIES LABELS packaging TIMEOUT 300)

# The package builds are Release builds of their own; the sanitizer and
# fuzz builds skip them.
if(NOT ROUTERD_INSTRUMENTED)
  set(KIT_WORK ${CMAKE_BINARY_DIR}/kit)
  add_test(NAME kit_package COMMAND ${KIT_TESTS}/package.sh ${CMAKE_SOURCE_DIR} ${KIT_WORK})
  set_tests_properties(kit_package PROPERTIES LABELS packaging TIMEOUT 1800 FIXTURES_SETUP kit_dist
                       RESOURCE_LOCK kit_build)
  foreach(t lintian oci_image sbom fresh_install)
    add_test(NAME kit_${t} COMMAND ${KIT_TESTS}/${t}.sh ${CMAKE_SOURCE_DIR} ${KIT_WORK})
    set_tests_properties(kit_${t} PROPERTIES LABELS packaging TIMEOUT 600 FIXTURES_REQUIRED kit_dist)
  endforeach()
  set_tests_properties(kit_fresh_install PROPERTIES SKIP_RETURN_CODE 77)
  add_test(NAME kit_reproducible COMMAND ${KIT_TESTS}/reproducible.sh ${CMAKE_SOURCE_DIR} ${KIT_WORK})
  set_tests_properties(kit_reproducible PROPERTIES LABELS packaging TIMEOUT 1800
                       FIXTURES_REQUIRED kit_dist RESOURCE_LOCK kit_build)
  add_test(NAME kit_readme_install COMMAND ${KIT_TESTS}/readme_install.sh ${CMAKE_SOURCE_DIR} ${KIT_WORK})
  set_tests_properties(kit_readme_install PROPERTIES LABELS packaging TIMEOUT 1800 RESOURCE_LOCK kit_build)
endif()
